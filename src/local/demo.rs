//! `log-etl demo`: the whole job on a laptop. Starts the log-API simulator with a fresh key,
//! runs scheduled passes into a local folder (some over a batch already landed), shows what
//! landed, and proves it by restoring everything and comparing with what the simulator served;
//! then compacts the closed hours and proves it again.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use crate::batch::encode::ReadLimits;
use crate::compact::{self, CompactError, CompactOptions};
use crate::config::{Config, var};
use crate::local::simulator::{GroundTruth, Simulator, SimulatorOptions};
use crate::local::status::{self, StatusError, StatusOptions};
use crate::local::synth::SynthOptions;
use crate::pipeline::{Pipeline, RunError};
use crate::record::fernet::{KeyRing, generate_key};
use crate::restore::{self, RestoreError};
use crate::store::{FolderStore, Store};

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
    #[error("compacting the closed hours failed")]
    Compact(#[source] CompactError),
    #[error("taking the status of what landed failed")]
    Status(#[source] StatusError),
    #[error("proof failed: {0}")]
    Proof(String),
}

/// What the demo showed.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReport {
    pub records_served: usize,
    pub records_restored: usize,
    pub quarantined: u64,
    /// Records found already landed when a batch was read again.
    pub records_already_present: u64,
    /// Data objects before and after the closed hours were compacted.
    pub objects_before_compaction: usize,
    pub objects_after_compaction: usize,
}

/// The demo's account, written line by line as it goes.
struct Account<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Account<'_, W> {
    fn line(&mut self, text: fmt::Arguments<'_>) -> Result<(), DemoError> {
        writeln!(self.out, "{text}").map_err(DemoError::Report)
    }
}

/// Runs the demo, writing its account to `out`.
pub async fn run_demo(
    options: &DemoOptions,
    out: &mut impl Write,
) -> Result<DemoReport, DemoError> {
    prepare_folder(&options.out_dir)?;
    let key = generate_key();
    let ring = KeyRing::parse(&key).expect("a fresh key parses");
    // Batches start six minutes before a new year, three simulated minutes apart, so the
    // records cross an hour and a date. Like a source that serves "the last 150 records", each
    // read re-ordered, windows overlap: every record is read several times, in several orders.
    let sim_options = SimulatorOptions {
        window: 150,
        step: 100,
        shuffle: true,
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
        ring,
        sim_options,
    )
    .await
    .map_err(DemoError::Simulator)?;
    let mut account = Account { out };
    account.line(format_args!("log-etl demo"))?;
    account.line(format_args!(
        "  simulator  {} (the last 150 records, 100 new every {:?}, each read re-ordered; fresh key)",
        sim.url(),
        options.pass_interval * 2
    ))?;
    account.line(format_args!("  landing in {}/", options.out_dir.display()))?;
    account.line(format_args!(""))?;

    let config = demo_config(&sim.url(), &key);
    let store = Store::Folder(FolderStore::new(&options.out_dir));
    let pipeline = Pipeline::new(&config, store.clone(), None).map_err(DemoError::Pass)?;
    let mut already_present = 0;
    let mut next = Instant::now();
    for pass in 1..=options.passes {
        tokio::time::sleep_until(next.into()).await;
        next += options.pass_interval;
        let summary = pipeline
            .run_pass(Utc::now(), Instant::now() + Duration::from_secs(30))
            .await
            .map_err(DemoError::Pass)?;
        already_present += summary.written.records_already_present;
        account.line(format_args!(
            "  pass {pass:>2}: {} records, {} landed in {} hour(s), {} already there, {} quarantined; {} object(s) written{}",
            summary.records_in,
            summary.written.records_landed,
            summary.written.hours.len(),
            summary.written.records_already_present,
            summary.written.records_quarantined,
            summary.written.objects_written,
            super::describe_reasons(&summary.refused_by_reason)
        ))?;
    }
    let truth = sim.ground_truth();
    sim.stop().await;

    let landed = describe_landed(&store, &config, &truth, &mut account).await?;
    let mut report = prove(
        &store,
        &config,
        &truth,
        landed,
        already_present,
        &mut account,
    )
    .await?;
    compact_and_prove_again(&store, &config, &truth, &mut report, &mut account).await?;
    Ok(report)
}

/// Compacts the demo's hours (dated 2023, long closed), shows the objects before and after, and
/// proves again that every record served is there once.
async fn compact_and_prove_again<W: Write>(
    store: &Store,
    config: &Config,
    truth: &GroundTruth,
    report: &mut DemoReport,
    account: &mut Account<'_, W>,
) -> Result<(), DemoError> {
    let data = format!("{}/", config.objects.layout.data_prefix());
    let count = |keys: Vec<String>| {
        keys.iter()
            .filter(|k| config.objects.layout.is_object(k))
            .count()
    };
    report.objects_before_compaction = count(list(store, &data).await?);
    let options = CompactOptions {
        now: Utc::now(),
        closed_after: config.compaction.after,
        hours: None,
        deadline: None,
    };
    let summary = compact::run(store, &config.objects, &options)
        .await
        .map_err(DemoError::Compact)?;
    let keys = list(store, &data).await?;
    report.objects_after_compaction = count(keys.clone());
    account.line(format_args!(""))?;
    account.line(format_args!(
        "  compaction of the closed hours (log-etl compact): {} objects -> {} ({} hour(s) merged, {} duplicate(s) dropped)",
        report.objects_before_compaction,
        report.objects_after_compaction,
        summary.hours_compacted,
        summary.duplicates_dropped
    ))?;
    let data_keys: Vec<String> = keys
        .into_iter()
        .filter(|k| config.objects.layout.is_object(k))
        .collect();
    let (restored, served) = restored_and_served(store, &data_keys, truth).await?;
    let same = restored == served;
    account.line(format_args!(
        "    {} after it, {} records restored, identical to the {} served, none twice: {}",
        if same { "ok  " } else { "FAIL" },
        restored.len(),
        served.len(),
        if same { "yes" } else { "NO" }
    ))?;
    if !same {
        return Err(DemoError::Proof(
            "restored records differ from the records served after compaction".into(),
        ));
    }
    Ok(())
}

fn demo_config(url: &str, key: &str) -> Config {
    let settings = [(var::LOG_API_URL.name, url), (var::FERNET_KEY.name, key)];
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

/// What landed, for the proof.
struct Landed {
    /// Distinct quarantine lines.
    quarantined: u64,
    /// Keys of the data objects.
    data_keys: Vec<String>,
}

async fn describe_landed<W: Write>(
    store: &Store,
    config: &Config,
    truth: &GroundTruth,
    account: &mut Account<'_, W>,
) -> Result<Landed, DemoError> {
    let layout = &config.objects.layout;
    let mut data_keys = list(store, &format!("{}/", layout.data_prefix())).await?;
    data_keys.retain(|key| layout.holds_records(key));
    // The table `log-etl status --records` shows, every hour long closed but not compacted yet.
    let options = StatusOptions {
        now: Utc::now(),
        closed_after: config.compaction.after,
        hours: None,
        records: true,
    };
    let landed = status::status(store, &config.objects, &options)
        .await
        .map_err(DemoError::Status)?;
    // A batch read in two passes either side of an hour is quarantined in both hour folders (the
    // quarantine object is filed under the hour of the run), so entries are counted once each.
    let quarantine_keys = list(store, &format!("{}/", layout.quarantine_prefix())).await?;
    let mut entries = BTreeSet::new();
    for key in &quarantine_keys {
        let bytes = get(store, key).await?;
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(DemoError::Report)?;
        entries.extend(text.lines().map(str::to_owned));
    }
    let quarantined = entries.len() as u64;
    let stored = landed.totals.bytes + landed.totals.quarantine_bytes;
    account.line(format_args!(""))?;
    account.line(format_args!(
        "  what landed (log-etl status --records --dir {}):",
        store.locate("").trim_end_matches('/')
    ))?;
    let mut table = Vec::new();
    status::write_table(&landed, &mut table).map_err(DemoError::Report)?;
    for line in String::from_utf8_lossy(&table).lines() {
        match line.is_empty() {
            true => account.line(format_args!(""))?,
            false => account.line(format_args!("    {line}"))?,
        }
    }
    account.line(format_args!(
        "  {quarantined} distinct record(s) in quarantine (undecryptable)"
    ))?;
    account.line(format_args!(
        "  compression: {} bytes served (each record once) -> {} bytes stored ({:.1}x)",
        truth.bytes,
        stored,
        truth.bytes as f64 / stored.max(1) as f64
    ))?;
    Ok(Landed {
        quarantined,
        data_keys,
    })
}

async fn list(store: &Store, prefix: &str) -> Result<Vec<String>, DemoError> {
    store
        .list(prefix)
        .await
        .map_err(|e| DemoError::Restore(RestoreError::Store(e)))
}

async fn get(store: &Store, key: &str) -> Result<Vec<u8>, DemoError> {
    store
        .get(key)
        .await
        .map_err(|e| DemoError::Restore(RestoreError::Store(e)))
}

/// The records restored from the objects `keys` and the records served, each as sorted JSON
/// lines, to be compared.
async fn restored_and_served(
    store: &Store,
    keys: &[String],
    truth: &GroundTruth,
) -> Result<(Vec<String>, Vec<String>), DemoError> {
    let mut restored = Vec::new();
    for key in keys {
        let bytes = get(store, key).await?;
        restore::restore_object(key, &bytes[..], ReadLimits::default(), &mut restored)
            .map_err(DemoError::Restore)?;
    }
    let mut restored: Vec<String> = String::from_utf8(restored)
        .map_err(|e| DemoError::Proof(e.to_string()))?
        .lines()
        .map(str::to_owned)
        .collect();
    let mut served: Vec<String> = truth
        .records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a record serialises"))
        .collect();
    restored.sort();
    served.sort();
    Ok((restored, served))
}

async fn prove<W: Write>(
    store: &Store,
    config: &Config,
    truth: &GroundTruth,
    landed: Landed,
    already_present: u64,
    account: &mut Account<'_, W>,
) -> Result<DemoReport, DemoError> {
    let (restored, served) = restored_and_served(store, &landed.data_keys, truth).await?;
    let (restored_count, served_count) = (restored.len(), served.len());
    let data_dir = store.locate(config.objects.layout.data_prefix());
    account.line(format_args!(""))?;
    account.line(format_args!(
        "  proof (restore everything under {}/ and compare with what the simulator served):",
        store.locate("").trim_end_matches('/')
    ))?;
    let same = restored == served;
    account.line(format_args!(
        "    {} {restored_count} records restored, {served_count} decryptable records served, identical field for field and none twice: {}",
        if same { "ok  " } else { "FAIL" },
        if same { "yes" } else { "NO" }
    ))?;
    let quarantine_ok = landed.quarantined == truth.undecryptable;
    account.line(format_args!(
        "    {} {} records quarantined, {} undecryptable records served",
        if quarantine_ok { "ok  " } else { "FAIL" },
        landed.quarantined,
        truth.undecryptable
    ))?;
    // Restored == served (as sorted lists) already rules out a record landing twice; this line
    // shows that the repeated reads were recognised as objects already there.
    if already_present > 0 {
        account.line(format_args!(
            "    ok   {already_present} record(s) found already landed on repeated reads, none written twice"
        ))?;
    } else {
        account.line(format_args!(
            "    note no batch was read twice this time (passes ran slower than the batch period)"
        ))?;
    }
    account.line(format_args!(
        "  restore them yourself: cargo run -- restore {data_dir}"
    ))?;
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
        records_already_present: already_present,
        objects_before_compaction: 0,
        objects_after_compaction: 0,
    })
}
