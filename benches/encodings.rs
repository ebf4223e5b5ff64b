//! The two object encodings side by side on the same usual records, in one run: bytes per
//! record, the time to encode (what an object writer pays: compression and the content digest)
//! and to read back (what exactly-once, compaction and restore pay), at the default levels and
//! at the higher zstd levels a compaction could use. Prints figures; asserts only that every
//! body reads back to the same lines.
//!
//!   cargo bench --bench encodings [-- RECORDS]      (default 20000)

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use log_etl::batch::encode::{
    DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, ObjectEncoding, ObjectWriter, ReadLimits, read_lines,
};
use log_etl::batch::spool::SpoolPolicy;
use log_etl::local::synth::{Synth, SynthOptions};
use log_etl::record::fernet::{KeyRing, generate_key};
use log_etl::record::hour::HourWindow;
use log_etl::record::{RecordLimits, process_record};

/// zstd 19 takes about half a millisecond a record: it runs on the first records only, beside
/// zstd 3 on the same records (a smaller object compresses less, so only that pair compares).
const SLOW_LEVEL_RECORDS: usize = 2_000;

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let ring = KeyRing::parse(&generate_key()).unwrap();
    let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, 2).unwrap();
    let lines: Vec<Vec<u8>> = Synth::new(SynthOptions::default())
        .batch(&ring, start, count)
        .iter()
        .map(|item| {
            let placed = process_record(
                &item.source,
                &ring,
                &RecordLimits::default(),
                &HourWindow::unbounded(),
            )
            .unwrap();
            placed.line
        })
        .collect();
    let ndjson_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "log-etl encodings benchmark: {count} usual records as landed ({:.1} bytes/record of NDJSON), one core",
        ndjson_bytes as f64 / count as f64
    );
    println!();
    println!(
        "  encoding  level  records  bytes/record  encode µs/record  read µs/record  read MB/s"
    );
    let slow = SLOW_LEVEL_RECORDS.min(count);
    let cases = [
        (ObjectEncoding::GzipNdjson, DEFAULT_GZIP_LEVEL, count),
        (ObjectEncoding::GzipNdjson, 9, count),
        (ObjectEncoding::ZstdNdjson, DEFAULT_ZSTD_LEVEL, count),
        (ObjectEncoding::ZstdNdjson, 9, count),
        (ObjectEncoding::ZstdNdjson, 12, count),
        (ObjectEncoding::ZstdNdjson, DEFAULT_ZSTD_LEVEL, slow),
        (ObjectEncoding::ZstdNdjson, 19, slow),
    ];
    let mut figures = Vec::new();
    for (encoding, level, n) in cases {
        let figure = measure(&lines[..n], encoding, level);
        println!(
            "  {:<8}  {level:>5}  {n:>7}  {:>12.1}  {:>16.2}  {:>14.2}  {:>9.0}",
            encoding.extension(),
            figure.bytes_per_record,
            figure.encode_us,
            figure.read_us,
            figure.read_mb_s
        );
        figures.push((encoding, level, figure));
    }
    let find = |encoding, level| {
        figures
            .iter()
            .find(|(e, l, f)| *e == encoding && *l == level && f.records == count)
            .map(|(_, _, f)| f)
            .expect("measured above")
    };
    let gzip = find(ObjectEncoding::GzipNdjson, DEFAULT_GZIP_LEVEL);
    let zstd = find(ObjectEncoding::ZstdNdjson, DEFAULT_ZSTD_LEVEL);
    println!();
    println!(
        "zstd {DEFAULT_ZSTD_LEVEL} against gzip {DEFAULT_GZIP_LEVEL}, same records: size {:.2}x, encode time {:.2}x, read time {:.2}x",
        zstd.bytes_per_record / gzip.bytes_per_record,
        zstd.encode_us / gzip.encode_us,
        zstd.read_us / gzip.read_us
    );
    println!(
        "  (encode: the object writer as the function runs it, compression and the SHA-256 content\n   \
         digest; read: the reader every exactly-once check, compaction and restore use, lines split\n   \
         and bounded; best of 5, zstd 19 of 1; MB/s of uncompressed NDJSON)"
    );
}

struct Figure {
    records: usize,
    bytes_per_record: f64,
    encode_us: f64,
    read_us: f64,
    read_mb_s: f64,
}

fn measure(lines: &[Vec<u8>], encoding: ObjectEncoding, level: u32) -> Figure {
    let runs = if level >= 19 { 1 } else { 5 };
    let (encode, body) = best_of(runs, || {
        let mut writer = ObjectWriter::encoding(encoding, level, &SpoolPolicy::in_memory());
        for line in lines {
            writer.write_line(line).unwrap();
        }
        writer.finish().unwrap().body.to_vec().unwrap()
    });
    let (read, read_back) = best_of(5, || {
        read_lines(&body[..], ReadLimits::default())
            .map(|line| line.unwrap())
            .collect::<Vec<_>>()
    });
    assert!(read_back == lines, "{encoding:?} {level}: lines differ");
    let n = lines.len() as f64;
    let uncompressed: usize = lines.iter().map(|l| l.len() + 1).sum();
    Figure {
        records: lines.len(),
        bytes_per_record: body.len() as f64 / n,
        encode_us: encode.as_secs_f64() * 1e6 / n,
        read_us: read.as_secs_f64() * 1e6 / n,
        read_mb_s: uncompressed as f64 / read.as_secs_f64() / 1e6,
    }
}

/// Fastest of `runs` runs, and the last run's result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut fastest = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = black_box(f());
        fastest = fastest.min(started.elapsed());
        last = Some(out);
    }
    (fastest, last.expect("at least one run"))
}
