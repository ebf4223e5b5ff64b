//! A saved response of any size through the pipeline on every core: one thread reads and splits
//! the array, workers decrypt, parse and compact chunks of records, and one thread puts the
//! results back in source order and encodes them. The output is the same, byte for byte, as
//! encoding the records one by one; memory stays bounded by the channels' capacity.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::batch::response::{self, ResponseError};
use crate::batch::{Batch, BatchOutput, BatchSettings};
use crate::record::fernet::KeyRing;
use crate::record::{self, CompactRecord, RecordError};

/// Records handed to a worker at a time.
const CHUNK: usize = 1024;

type Processed = (
    u64,
    Vec<Box<RawValue>>,
    Vec<Result<CompactRecord, RecordError>>,
);

/// Encodes the JSON array read from `reader` with `workers` threads doing the per-record work.
pub fn encode_parallel(
    reader: impl Read,
    ring: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
    workers: usize,
) -> Result<BatchOutput, ResponseError> {
    let workers = workers.max(1);
    std::thread::scope(|scope| {
        let (work_tx, work_rx) = sync_channel::<(u64, Vec<Box<RawValue>>)>(workers * 2);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = sync_channel::<Processed>(workers * 2);
        for _ in 0..workers {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = work_rx
                        .lock()
                        .map_err(|_| ())
                        .and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((seq, chunk)) = next else { break };
                    let results = chunk
                        .iter()
                        .map(|raw| record::process_record(raw.get(), ring, &settings.limits))
                        .collect();
                    if done_tx.send((seq, chunk, results)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let collector = scope.spawn(move || collect(done_rx, ring, settings, run_time));

        let mut chunk = Vec::with_capacity(CHUNK);
        let mut seq = 0;
        let mut send = |chunk: Vec<Box<RawValue>>| {
            let sent = work_tx
                .send((seq, chunk))
                .map_err(|_| io::Error::other("the encoder stopped"));
            seq += 1;
            sent
        };
        let max_element = response::element_limit(settings.limits.max_record_bytes);
        let read = response::for_each_record(reader, max_element, |raw| {
            chunk.push(raw.to_owned());
            if chunk.len() == CHUNK {
                send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
            }
            Ok(())
        })
        .and_then(|_| match chunk.is_empty() {
            true => Ok(()),
            false => send(chunk).map_err(ResponseError::Sink),
        });
        // Closing the work channel is what lets the workers, then the encoder, finish.
        drop(work_tx);
        let collected = collector.join().expect("the encoder thread does not panic");
        // An encoder failure explains a failed send; otherwise the reading error comes first.
        match (read, collected) {
            (_, Err(encode)) => Err(ResponseError::Sink(encode)),
            (Err(read), Ok(_)) => Err(read),
            (Ok(()), Ok(output)) => Ok(output),
        }
    })
}

/// Puts processed chunks back in source order and encodes them.
fn collect(
    done: Receiver<Processed>,
    ring: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
) -> io::Result<BatchOutput> {
    let mut batch = Batch::new(ring, settings);
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (seq, chunk, results) in done {
        waiting.insert(seq, (chunk, results));
        while let Some((chunk, results)) = waiting.remove(&next) {
            for (raw, outcome) in chunk.iter().zip(results) {
                batch.push_processed(raw, outcome)?;
            }
            next += 1;
        }
    }
    batch.finish(run_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::layout::{ObjectLayout, PartitionStyle};
    use crate::local::synth::{Synth, SynthOptions, response_body};
    use crate::record::fernet::generate_key;
    use chrono::TimeZone;

    fn objects(output: &BatchOutput) -> Vec<(String, Vec<u8>)> {
        output
            .objects
            .iter()
            .map(|o| (o.key.clone(), o.body.to_vec().unwrap()))
            .collect()
    }

    #[test]
    fn any_number_of_workers_gives_the_sequential_output() {
        // Given a response of several chunks with bad records mixed in
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 40, 0).unwrap();
        let options = SynthOptions {
            bad_per_mille: 30,
            unusual_per_mille: 100,
            ..SynthOptions::default()
        };
        let body = response_body(&Synth::new(options).batch(&ring, start, 3 * CHUNK + 17));
        let settings = BatchSettings::new(
            ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap(),
        );
        let run_time = Utc.with_ymd_and_hms(2023, 3, 18, 16, 0, 0).unwrap();
        // When it is encoded one by one, and on 1, 2 and 4 workers
        let mut batch = Batch::new(&ring, &settings);
        response::for_each_record(body.as_bytes(), usize::MAX, |raw| batch.push(raw)).unwrap();
        let sequential = batch.finish(run_time).unwrap();
        for workers in [1, 2, 4] {
            let parallel =
                encode_parallel(body.as_bytes(), &ring, &settings, run_time, workers).unwrap();
            // Then the objects are the same, byte for byte
            assert_eq!(
                objects(&parallel),
                objects(&sequential),
                "{workers} workers"
            );
            assert_eq!(parallel.stats, sequential.stats);
        }
    }

    #[test]
    fn a_malformed_response_is_an_error_whatever_the_workers() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let settings = BatchSettings::new(
            ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap(),
        );
        let run_time = Utc.with_ymd_and_hms(2023, 3, 18, 16, 0, 0).unwrap();
        let err = encode_parallel(
            &b"[{\"data\": \"x\"}, oops]"[..],
            &ring,
            &settings,
            run_time,
            2,
        )
        .unwrap_err();
        assert!(matches!(err, ResponseError::Malformed { .. }), "{err:?}");
    }
}
