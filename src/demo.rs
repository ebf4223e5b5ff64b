//! `log-etl demo`: the whole job on a laptop. Starts the log-API simulator with a fresh key,
//! runs scheduled passes into a local folder (some over a batch already landed), shows what
//! landed, and proves it by restoring everything and comparing with what the simulator served.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value};

use crate::config::{Config, var};
use crate::keyring::{KeyRing, generate_key};
use crate::pipeline::{Pipeline, RunError, Target};
use crate::restore::{self, RestoreError};
use crate::simulator::{GroundTruth, Simulator, SimulatorOptions};
use crate::synth::SynthOptions;

/// Marks a folder as the demo's own, so a rerun may clear it (and never anything else).
const MARKER: &str = ".log-etl-demo";

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out_dir: PathBuf,
    /// Scheduled passes to run.
    pub passes: u32,
    /// Real time between passes; the simulator replaces its batch every two of them, so most
    /// batches are read twice.
    pub pass_interval: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("demo-out"),
            passes: 12,
            pass_interval: Duration::from_millis(500),
        }
    }
}

/// Why the demo could not run or its proof failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} exists and is not a demo folder; choose an empty or new folder")]
    FolderInUse(PathBuf),
    #[error("preparing {path} failed")]
    Folder {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the simulator could not start")]
    Simulator(#[source] io::Error),
    #[error("a pass failed")]
    Pass(#[source] RunError),
    #[error("reading back what landed failed")]
    Restore(#[source] RestoreError),
    #[error("writing the report failed")]
    Report(#[source] io::Error),
    #[error("proof failed: {0}")]
    Proof(String),
}

/// What the demo showed.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReport {
    pub records_served: usize,
    pub records_restored: usize,
    pub quarantined: u64,
    pub objects_already_present: u64,
}

/// Runs the demo, writing its account to `out`.
pub async fn run_demo(
    options: &DemoOptions,
    out: &mut impl Write,
) -> Result<DemoReport, DemoError> {
    prepare_folder(&options.out_dir)?;
    let key = generate_key();
    let keys = KeyRing::parse(&key).expect("a fresh key parses");
    // Batches start six minutes before a new year, three simulated minutes apart, so the
    // records cross an hour and a date.
    let sim_options = SimulatorOptions {
        batch_size: 100,
        period: Some(options.pass_interval * 2),
        synth: SynthOptions {
            seed: 2023,
            unusual_per_mille: 40,
            bad_per_mille: 15,
            ..SynthOptions::default()
        },
        record_start: Utc
            .with_ymd_and_hms(2023, 12, 31, 23, 54, 0)
            .single()
            .expect("valid time"),
        record_step: Duration::from_secs(180),
        truth_file: None,
    };
    let sim = Simulator::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        keys,
        sim_options,
    )
    .await
    .map_err(DemoError::Simulator)?;
    let report = DemoError::Report;
    writeln!(out, "log-etl demo").map_err(report)?;
    writeln!(
        out,
        "  simulator  {} (100 records per batch, a new batch every {:?}, fresh key)",
        sim.url(),
        options.pass_interval * 2
    )
    .map_err(report)?;
    writeln!(out, "  landing in {}/", options.out_dir.display()).map_err(report)?;
    writeln!(out).map_err(report)?;

    let config = demo_config(&sim.url(), &key);
    let pipeline = Pipeline::from_config(&config, Target::Folder(options.out_dir.clone()))
        .await
        .map_err(DemoError::Pass)?;
    let mut already_present = 0;
    let mut next = Instant::now();
    for pass in 1..=options.passes {
        tokio::time::sleep_until(next.into()).await;
        next += options.pass_interval;
        let summary = pipeline
            .run_pass(Utc::now(), Instant::now() + Duration::from_secs(30))
            .await
            .map_err(DemoError::Pass)?;
        already_present += summary.objects_already_present;
        writeln!(
            out,
            "  pass {pass:>2}: {} records, {} landed in {} hour(s), {} quarantined; objects: {} written, {} already present",
            summary.records_in,
            summary.records_written,
            summary.hours.len(),
            summary.records_quarantined,
            summary.objects_written,
            summary.objects_already_present
        )
        .map_err(report)?;
    }
    let truth = sim.ground_truth();
    sim.stop().await;

    let landed = describe_landed(&options.out_dir, &config, &truth, out)?;
    prove(
        &options.out_dir,
        &config,
        &truth,
        landed,
        already_present,
        out,
    )
}

fn demo_config(url: &str, key: &str) -> Config {
    let settings = [(var::LOG_API_URL, url), (var::FERNET_KEY, key)];
    Config::from_lookup(|name| {
        settings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("the demo's settings are valid")
}

fn prepare_folder(dir: &Path) -> Result<(), DemoError> {
    let folder_err = |source| DemoError::Folder {
        path: dir.to_owned(),
        source,
    };
    if dir.exists() {
        let empty = fs::read_dir(dir).map_err(folder_err)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(DemoError::FolderInUse(dir.to_owned()));
        }
        fs::remove_dir_all(dir).map_err(folder_err)?;
    }
    fs::create_dir_all(dir).map_err(folder_err)?;
    fs::write(
        dir.join(MARKER),
        b"log-etl demo output; `log-etl demo` clears this folder\n",
    )
    .map_err(folder_err)
}

/// Counts of what landed, for the proof.
struct Landed {
    quarantined: u64,
    files: Vec<PathBuf>,
}

fn describe_landed(
    dir: &Path,
    config: &Config,
    truth: &GroundTruth,
    out: &mut impl Write,
) -> Result<Landed, DemoError> {
    let report = DemoError::Report;
    let data_root = dir.join(config.layout.data_prefix());
    let files = restore::find_object_files(std::slice::from_ref(&data_root), "json.gz", None)
        .map_err(|e| {
            DemoError::Restore(RestoreError::Io {
                name: data_root.display().to_string(),
                source: e,
            })
        })?;
    // Objects and records per hour folder.
    let mut per_hour: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for file in &files {
        let folder = file
            .parent()
            .and_then(|p| p.strip_prefix(dir).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let records = restore::restore_files(std::slice::from_ref(file), &mut io::sink())
            .map_err(DemoError::Restore)?;
        let entry = per_hour.entry(folder).or_default();
        entry.0 += 1;
        entry.1 += records;
        entry.2 += fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    }
    let quarantine_root = dir.join(config.layout.quarantine_prefix());
    let quarantine_files = if quarantine_root.exists() {
        restore::find_object_files(std::slice::from_ref(&quarantine_root), "json.gz", None)
            .map_err(|e| {
                DemoError::Restore(RestoreError::Io {
                    name: quarantine_root.display().to_string(),
                    source: e,
                })
            })?
    } else {
        Vec::new()
    };
    // A batch read in two passes either side of an hour is quarantined in both hour folders (the
    // quarantine object is filed under the hour of the run), so entries are counted once each.
    let mut entries = BTreeSet::new();
    let mut stored: u64 = per_hour.values().map(|v| v.2).sum();
    for file in &quarantine_files {
        entries.extend(read_lines(file)?);
        stored += fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    }
    let quarantined = entries.len() as u64;
    writeln!(out).map_err(report)?;
    writeln!(out, "  what landed:").map_err(report)?;
    writeln!(
        out,
        "    {:<28} {:>7} {:>8} {:>9}",
        "folder", "objects", "records", "bytes"
    )
    .map_err(report)?;
    for (folder, (objects, records, bytes)) in &per_hour {
        writeln!(out, "    {folder:<28} {objects:>7} {records:>8} {bytes:>9}").map_err(report)?;
    }
    writeln!(
        out,
        "    {:<28} {:>7} {:>8}",
        format!("{}/ (undecryptable)", config.layout.quarantine_prefix()),
        quarantine_files.len(),
        quarantined
    )
    .map_err(report)?;
    writeln!(
        out,
        "  compression: {} bytes served (distinct batches) -> {} bytes stored ({:.1}x)",
        truth.bytes,
        stored,
        truth.bytes as f64 / stored.max(1) as f64
    )
    .map_err(report)?;
    Ok(Landed { quarantined, files })
}

fn read_lines(file: &Path) -> Result<Vec<String>, DemoError> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(fs::File::open(file).map_err(DemoError::Report)?)
        .read_to_string(&mut text)
        .map_err(DemoError::Report)?;
    Ok(text.lines().map(str::to_owned).collect())
}

fn prove(
    dir: &Path,
    config: &Config,
    truth: &GroundTruth,
    landed: Landed,
    already_present: u64,
    out: &mut impl Write,
) -> Result<DemoReport, DemoError> {
    let mut restored = Vec::new();
    restore::restore_files(&landed.files, &mut restored).map_err(DemoError::Restore)?;
    let mut restored: Vec<String> = String::from_utf8(restored)
        .map_err(|e| DemoError::Proof(e.to_string()))?
        .lines()
        .map(str::to_owned)
        .collect();
    let mut served: Vec<String> = truth
        .records
        .iter()
        .map(|r: &Map<String, Value>| serde_json::to_string(r).expect("a record serialises"))
        .collect();
    let (restored_count, served_count) = (restored.len(), served.len());
    restored.sort();
    served.sort();
    writeln!(out).map_err(DemoError::Report)?;
    writeln!(
        out,
        "  proof (restore everything under {}/ and compare with what the simulator served):",
        dir.display()
    )
    .map_err(DemoError::Report)?;
    let same = restored == served;
    writeln!(
        out,
        "    {} {restored_count} records restored, {served_count} decryptable records served, identical field for field and none twice: {}",
        if same { "ok  " } else { "FAIL" },
        if same { "yes" } else { "NO" }
    )
    .map_err(DemoError::Report)?;
    let quarantine_ok = landed.quarantined == truth.undecryptable;
    writeln!(
        out,
        "    {} {} records quarantined, {} undecryptable records served",
        if quarantine_ok { "ok  " } else { "FAIL" },
        landed.quarantined,
        truth.undecryptable
    )
    .map_err(DemoError::Report)?;
    // Restored == served (as sorted lists) already rules out a record landing twice; this line
    // shows that the repeated reads were recognised as objects already there.
    if already_present > 0 {
        writeln!(
            out,
            "    ok   {already_present} object(s) found already present on repeated reads, none written twice"
        )
    } else {
        writeln!(
            out,
            "    note no batch was read twice this time (passes ran slower than the batch period)"
        )
    }
    .map_err(DemoError::Report)?;
    writeln!(
        out,
        "  restore them yourself: log-etl restore {}",
        dir.join(config.layout.data_prefix()).display()
    )
    .map_err(DemoError::Report)?;
    if !same {
        return Err(DemoError::Proof(
            "restored records differ from the records served".into(),
        ));
    }
    if !quarantine_ok {
        return Err(DemoError::Proof(
            "quarantine count differs from the undecryptable records served".into(),
        ));
    }
    Ok(DemoReport {
        records_served: served_count,
        records_restored: restored_count,
        quarantined: landed.quarantined,
        objects_already_present: already_present,
    })
}
