//! Throughput of the pure pipeline (decrypt → transcode → group → gzip) on one core against its
//! floor (the cryptography and the compressor alone on the same bytes), the gzip level
//! trade-off, where the time goes per record (the one-pass transcoder, and the tree path's
//! stages for comparison), and the Python reference on the same records in the same run.
//! Prints figures, the ratios as `name value` lines a script can pick up
//! (`pipeline/floor 1.42x`); asserts nothing about speed.
//!
//!   cargo bench --bench pipeline [-- RECORDS]      (default 100000)

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use log_etl::batch::encode::DEFAULT_GZIP_LEVEL;
use log_etl::batch::layout::{ObjectLayout, PartitionStyle};
use log_etl::batch::{Batch, BatchOutput, BatchSettings, ObjectSettings, SourceJson};
use log_etl::local::synth::{Synth, SynthOptions, response_body};
use log_etl::record::fernet::{KeyRing, TokenBuffers, generate_key};
use log_etl::record::fields;
use log_etl::record::payload::parse_payload;
use log_etl::record::pyrepr::ParseLimits;
use log_etl::record::transcode::{TranscodeScratch, transcode};
use log_etl::record::{
    Placed, RecordError, RecordLimits, RecordScratch, process_record_into, process_record_tree,
};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let key = generate_key();
    let keys = KeyRing::parse(&key).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, 2).unwrap();
    let items = Synth::new(SynthOptions::default()).batch(&keys, start, count);
    let records: Vec<Box<RawValue>> = items
        .iter()
        .map(|i| RawValue::from_string(i.source.clone()).unwrap())
        .collect();
    let run_time = Utc::now();
    let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
    println!("log-etl pipeline benchmark: {count} generated records, one core");
    println!();

    // --- The whole pure pipeline at each gzip level ---------------------------------------
    let mut by_level = Vec::new();
    for level in 1..=9u32 {
        let objects = ObjectSettings {
            level,
            ..ObjectSettings::new(layout.clone())
        };
        let settings = BatchSettings::new(objects, RecordLimits::default());
        let (elapsed, out_bytes) = best_of(3, || {
            let out = one_core(&records, &keys, &settings, run_time);
            assert_eq!(out.stats.records_placed as usize, count);
            out.objects.iter().map(|o| o.body.len()).sum::<u64>()
        });
        by_level.push((level, elapsed, out_bytes));
    }
    let level9 = by_level[8].2 as f64;
    println!("decrypt → transcode → group → gzip, by gzip level:");
    println!("  level  records/s  bytes/record  size vs level 9");
    for &(level, elapsed, bytes) in &by_level {
        let mark = if level == DEFAULT_GZIP_LEVEL {
            "  (default)"
        } else {
            ""
        };
        println!(
            "  {level:>5}  {:>9.0}  {:>12.1}  {:>+14.1}%{mark}",
            count as f64 / elapsed.as_secs_f64(),
            bytes as f64 / count as f64,
            (bytes as f64 / level9 - 1.0) * 100.0
        );
    }
    let (_, default_elapsed, default_bytes) = by_level[DEFAULT_GZIP_LEVEL as usize - 1];
    // The same pipeline with every record through the tree (the path before the transcoder).
    let settings = BatchSettings::new(ObjectSettings::new(layout.clone()), RecordLimits::default());
    let (tree_elapsed, tree_bytes) = best_of(3, || {
        let out = tree_one_core(&records, &keys, &settings, run_time);
        out.objects.iter().map(|o| o.body.len()).sum::<u64>()
    });
    assert_eq!(
        tree_bytes, default_bytes,
        "both paths write the same objects"
    );
    println!();

    // --- Where the time goes, per record --------------------------------------------------
    // Each stage is timed on its own, over the previous stage's output prepared beforehand
    // (best of 3), so a noisy stage cannot hide in another's difference.
    let tokens: Vec<String> = records
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(r.get()).unwrap()["data"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let per = |d: Duration| d.as_secs_f64() * 1e9 / count as f64;
    let plains: Vec<Vec<u8>> = tokens.iter().map(|t| keys.decrypt(t).unwrap()).collect();
    let parsed: Vec<_> = plains
        .iter()
        .map(|p| parse_payload(p, ParseLimits::default()).unwrap())
        .collect();
    let mut compacted = parsed.clone();
    compacted.iter_mut().for_each(fields::shorten);
    let lines: Vec<Vec<u8>> = compacted
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let ndjson: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.iter().chain(b"\n"))
        .copied()
        .collect();
    let window = RecordLimits::default().window(run_time);
    let decrypt = best_of(3, || {
        let mut buffers = TokenBuffers::default();
        tokens
            .iter()
            .map(|t| keys.decrypt_into(t, &mut buffers).unwrap().len())
            .sum::<usize>()
    })
    .0;
    let transcoded = best_of(3, || {
        let (mut scratch, mut line) = (TranscodeScratch::default(), Vec::new());
        plains
            .iter()
            .map(|p| {
                transcode(p, ParseLimits::default(), &window, &mut scratch, &mut line)
                    .expect("a usual record is transcoded");
                line.len()
            })
            .sum::<usize>()
    })
    .0;
    let tree_stages: [(&str, Duration); 3] = [
        (
            "tree path: parse (Python literal to a map)",
            best_of(3, || {
                plains
                    .iter()
                    .map(|p| parse_payload(p, ParseLimits::default()).unwrap().len())
                    .sum::<usize>()
            })
            .0,
        ),
        ("tree path: compact (three fields)", {
            let mut fastest = Duration::MAX;
            for _ in 0..3 {
                let mut batch = parsed.clone();
                let started = Instant::now();
                batch.iter_mut().for_each(fields::shorten);
                fastest = fastest.min(started.elapsed());
                black_box(batch);
            }
            fastest
        }),
        (
            "tree path: serialise (NDJSON line)",
            best_of(3, || {
                compacted
                    .iter()
                    .map(|r| serde_json::to_vec(r).unwrap().len())
                    .sum::<usize>()
            })
            .0,
        ),
    ];
    let shared_stages: [(&str, Duration); 3] = [
        (
            "line hash (xxh3-64)",
            best_of(3, || {
                lines
                    .iter()
                    .map(|l| xxhash_rust::xxh3::xxh3_64(l) as usize & 1)
                    .sum::<usize>()
            })
            .0,
        ),
        (
            "content digest (SHA-256)",
            best_of(3, || Sha256::digest(&ndjson).len()).0,
        ),
        (
            "gzip",
            best_of(3, || gzip(&ndjson, DEFAULT_GZIP_LEVEL).len()).0,
        ),
    ];
    println!("per record, stage by stage (ns):");
    let row = |name: &str, elapsed: Duration| println!("  {name:<46} {:>6.0}", per(elapsed));
    row("decrypt (base64, HMAC-SHA256, AES-128-CBC)", decrypt);
    row(
        "transcode (parse, compact, serialise: one pass)",
        transcoded,
    );
    for (name, elapsed) in tree_stages.iter().chain(&shared_stages) {
        row(name, *elapsed);
    }
    let shared: Duration = shared_stages.iter().map(|(_, d)| *d).sum();
    let tree_parts: Duration = tree_stages.iter().map(|(_, d)| *d).sum();
    row("all stages, one pass", decrypt + transcoded + shared);
    row("all stages, tree path", decrypt + tree_parts + shared);
    println!();

    // --- The floor: AES + HMAC + gzip alone, on the same bytes ------------------------------
    let engine = base64::engine::general_purpose::URL_SAFE;
    let key_bytes = base64::Engine::decode(&engine, &key).unwrap();
    let raw_tokens: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| base64::Engine::decode(&engine, t).unwrap())
        .collect();
    // The pipeline and its floor in turns, fastest of each, so that a neighbour's load cannot
    // fall on one side of the ratio only.
    let (mut t_floor, mut t_gzip) = (Duration::MAX, Duration::MAX);
    let (mut t_pipeline, mut t_tree) = (default_elapsed, tree_elapsed);
    for _ in 0..5 {
        t_floor = t_floor.min(timed(|| crypto_floor(&key_bytes, &raw_tokens)).0);
        t_gzip = t_gzip.min(timed(|| gzip(&ndjson, DEFAULT_GZIP_LEVEL).len()).0);
        t_pipeline =
            t_pipeline.min(timed(|| one_core(&records, &keys, &settings, run_time).stats).0);
        t_tree = t_tree.min(timed(|| tree_one_core(&records, &keys, &settings, run_time).stats).0);
    }
    let (default_elapsed, tree_elapsed) = (t_pipeline, t_tree);
    let rust_rate = count as f64 / default_elapsed.as_secs_f64();
    let floor = per(t_floor) + per(t_gzip);
    println!("the floor: cryptography and compression alone on the same bytes (ns per record):");
    println!(
        "  HMAC-SHA256 verify + AES-128-CBC decrypt     {:>6.0}",
        per(t_floor)
    );
    println!(
        "  gzip level {DEFAULT_GZIP_LEVEL} of the output                  {:>6.0}",
        per(t_gzip)
    );
    println!(
        "  the pipeline itself (with grouping)            {:>6.0}",
        per(default_elapsed)
    );
    println!(
        "  the pipeline, tree path (with grouping)        {:>6.0}",
        per(tree_elapsed)
    );
    println!(
        "  floor {floor:.0}; the pipeline takes {:.2}x the floor (the tree path {:.2}x). The rest is\n  \
         base64, the transcoder, the digests and the grouping.",
        per(default_elapsed) / floor,
        per(tree_elapsed) / floor
    );
    println!("pipeline/floor {:.2}x", per(default_elapsed) / floor);
    println!("tree-pipeline/floor {:.2}x", per(tree_elapsed) / floor);
    println!("pipeline/records-per-s {rust_rate:.0}");
    println!();

    // --- The Python reference on the same records -----------------------------------------
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("response.json");
    std::fs::write(&response, response_body(&items)).unwrap();
    let out_dir = dir.path().join("reference-out");
    let reference = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/reference.py");
    let output = Command::new(python())
        .arg(&reference)
        .args([
            "offline",
            response.to_str().unwrap(),
            &key,
            out_dir.to_str().unwrap(),
        ])
        .output()
        .expect("the Python reference runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let py_rate = figures["records_per_s"].as_f64().unwrap();
    let py_bytes = figures["bytes_out"].as_f64().unwrap();
    println!(
        "against the Python reference (cryptography + ast.literal_eval + b64uuid + gzip -9), same records:"
    );
    println!(
        "  log-etl  {rust_rate:>9.0} records/s  {:>6.1} bytes/record",
        default_bytes as f64 / count as f64
    );
    println!(
        "  python   {py_rate:>9.0} records/s  {:>6.1} bytes/record",
        py_bytes / count as f64
    );
    println!("  speed-up {:.1}x", rust_rate / py_rate);
    println!("pipeline/python {:.1}x", rust_rate / py_rate);
}

/// The pipeline on one core, as a worker and the encoder run it on one thread: each record
/// through the one-pass path into reused buffers, then into the batch.
fn one_core(
    records: &[Box<RawValue>],
    keys: &KeyRing,
    settings: &BatchSettings,
    run_time: chrono::DateTime<Utc>,
) -> BatchOutput {
    let window = settings.limits.window(run_time);
    let mut batch = Batch::new(keys, settings, run_time);
    let (mut scratch, mut line) = (RecordScratch::default(), Vec::new());
    for raw in records {
        let placed = process_record_into(
            raw.get(),
            keys,
            &settings.limits,
            &window,
            &mut scratch,
            &mut line,
        );
        let outcome = placed.map(|placement| Placed {
            placement,
            line: &line,
        });
        batch
            .push_processed(&SourceJson::from(&**raw), outcome)
            .unwrap();
    }
    batch.finish().unwrap()
}

/// [`one_core`] with every record through the tree path.
fn tree_one_core(
    records: &[Box<RawValue>],
    keys: &KeyRing,
    settings: &BatchSettings,
    run_time: chrono::DateTime<Utc>,
) -> BatchOutput {
    let window = settings.limits.window(run_time);
    let mut batch = Batch::new(keys, settings, run_time);
    for raw in records {
        let placed: Result<_, RecordError> =
            process_record_tree(raw.get(), keys, &settings.limits, &window);
        let outcome = placed.as_ref().map(|p| p.as_placed()).map_err(Clone::clone);
        batch
            .push_processed(&SourceJson::from(&**raw), outcome)
            .unwrap();
    }
    batch.finish().unwrap()
}

/// Fastest of `runs` runs, and the last run's result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let (elapsed, value) = timed(&mut f);
        best = best.min(elapsed);
        last = Some(value);
    }
    (best, last.unwrap())
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = black_box(f());
    (start.elapsed(), value)
}

/// Verifies and decrypts every (base64-decoded) token with the primitives alone.
fn crypto_floor(key: &[u8], tokens: &[Vec<u8>]) -> usize {
    use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
    use hmac::{KeyInit, Mac};
    let mut plain_bytes = 0;
    for token in tokens {
        let (message, tag) = token.split_at(token.len() - 32);
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key[..16]).unwrap();
        mac.update(message);
        mac.verify_slice(tag).unwrap();
        let plain = cbc::Decryptor::<aes::Aes128>::new_from_slices(&key[16..], &message[9..25])
            .unwrap()
            .decrypt_padded_vec::<Pkcs7>(&message[25..])
            .unwrap();
        plain_bytes += black_box(plain).len();
    }
    plain_bytes
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn python() -> PathBuf {
    let path = std::env::var_os("LOG_ETL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "Python reference needs scripts/python-env (or LOG_ETL_PYTHON)"
    );
    path
}
