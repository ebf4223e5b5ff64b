//! A saved response of any size through the pipeline on every core: one thread reads and splits
//! the array, workers decrypt, parse and compact chunks of records, and one thread puts the
//! results back in source order and encodes them. The output is the same, byte for byte, as
//! encoding the records one by one.
//!
//! Memory is bounded in bytes, not in records: a chunk closes at [`CHUNK_RECORDS`] records or
//! [`CHUNK_BYTES`] bytes, and a chunk is handed out only when the bytes of every chunk read but
//! not yet encoded (queued, in a worker, or waiting for its turn) stay within
//! [`IN_FLIGHT_BYTES`]. A slow chunk therefore stops the reading instead of letting the others
//! pile up behind it; a single element larger than the whole allowance goes alone.
//!
//! Nothing is allocated per record: a chunk's elements lie end to end in one buffer, a worker
//! writes the chunk's lines end to end into another, with buffers of its own reused from record
//! to record, and the encoder hands a chunk's buffers back to the reader for the next one.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::batch::response::{self, Element, ResponseError, ResponseLimits, SourceJson, Stop};
use crate::batch::{Batch, BatchOutput, BatchSettings, EncodeError};
use crate::record::fernet::KeyRing;
use crate::record::hour::{HourWindow, Placement};
use crate::record::{self, Placed, RecordError, RecordLimits, RecordScratch};

/// Records handed to a worker at a time, at most.
pub const CHUNK_RECORDS: usize = 1024;
/// Source bytes handed to a worker at a time, at most (a larger element goes alone).
pub const CHUNK_BYTES: usize = 256 << 10;
/// Source bytes read but not yet encoded, at most (a larger element goes alone). Each byte is
/// held about twice while in flight (the source record, then its compact line), hence a weight
/// of two per byte against this allowance.
pub const IN_FLIGHT_BYTES: usize = 16 << 20;

/// One element of a chunk: where its JSON text ends in the chunk's buffer, or an element that
/// is not JSON (rare: its bytes are kept on their own).
enum Slot {
    Json { end: usize },
    NotJson { bytes: Vec<u8>, reason: String },
}

/// The outcome of one record of a chunk: its placement and where its line lies in the chunk's
/// lines, or why it was refused.
type Outcome = Result<(Placement, Range<usize>), RecordError>;

/// A chunk of source records, numbered in source order, and its weight against the allowance;
/// a worker adds their outcomes.
#[derive(Default)]
struct Chunk {
    seq: u64,
    /// The JSON text of the chunk's elements, end to end.
    text: String,
    slots: Vec<Slot>,
    weight: usize,
    /// The compact lines of the records that landed, end to end (filled by a worker).
    lines: Vec<u8>,
    /// One outcome per JSON element, in order (filled by a worker).
    outcomes: Vec<Outcome>,
}

impl Chunk {
    /// Empties the chunk for reuse, keeping its buffers (unless an outsized element grew them).
    fn recycled(mut self) -> Option<Self> {
        if self.text.capacity() > 2 * CHUNK_BYTES || self.lines.capacity() > 2 * CHUNK_BYTES {
            return None;
        }
        self.text.clear();
        self.slots.clear();
        self.lines.clear();
        self.outcomes.clear();
        self.weight = 0;
        Some(self)
    }

    /// Runs every JSON element through the record stages, its line into the chunk's lines.
    fn process(
        &mut self,
        ring: &KeyRing,
        limits: &RecordLimits,
        window: &HourWindow,
        scratch: &mut RecordScratch,
        line: &mut Vec<u8>,
    ) {
        let mut start = 0;
        for slot in &self.slots {
            let Slot::Json { end } = *slot else { continue };
            let raw = &self.text[start..end];
            start = end;
            let outcome = record::process_record_into(raw, ring, limits, window, scratch, line)
                .map(|placement| {
                    let at = self.lines.len();
                    self.lines.extend_from_slice(line);
                    (placement, at..self.lines.len())
                });
            self.outcomes.push(outcome);
        }
    }

    /// Pushes every element, with its outcome, into `batch` in order.
    fn encode(&self, batch: &mut Batch<'_>) -> Result<(), EncodeError> {
        let mut outcomes = self.outcomes.iter();
        let mut start = 0;
        for slot in &self.slots {
            match slot {
                Slot::Json { end } => {
                    let raw = SourceJson::read_before(&self.text[start..*end]);
                    start = *end;
                    let outcome = outcomes.next().expect("every record has its outcome");
                    let outcome = match outcome {
                        Ok((placement, at)) => Ok(Placed {
                            placement: *placement,
                            line: &self.lines[at.clone()],
                        }),
                        Err(err) => Err(err.clone()),
                    };
                    batch.push_processed(&raw, outcome)?;
                }
                Slot::NotJson { bytes, reason } => batch.push_not_json(bytes, reason)?,
            }
        }
        Ok(())
    }
}

/// Why a saved response could not be encoded: the response, or writing an object.
#[derive(Debug)]
pub enum ParallelError {
    Response(ResponseError),
    Encode(EncodeError),
}

/// The encoder stopped: the reader stops handing out chunks (the encoder's error explains why).
#[derive(Debug)]
struct EncoderStopped;

/// Encodes the JSON array read from `reader`, within `limits`, with `workers` threads doing the
/// per-record work.
pub fn encode_parallel(
    reader: impl Read,
    ring: &KeyRing,
    settings: &BatchSettings,
    limits: ResponseLimits,
    run_time: DateTime<Utc>,
    workers: usize,
) -> Result<BatchOutput, ParallelError> {
    let workers = workers.max(1);
    let budget = Budget::new(IN_FLIGHT_BYTES);
    let window = settings.limits.window(run_time);
    std::thread::scope(|scope| {
        let (work_tx, work_rx) = sync_channel::<Chunk>(workers * 2);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (done_tx, done_rx) = sync_channel::<Chunk>(workers * 2);
        // Emptied chunks go back to the reader; their number is bounded by the chunks in flight.
        let (spare_tx, spare_rx) = channel::<Chunk>();
        for _ in 0..workers {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            let window = &window;
            scope.spawn(move || {
                let mut scratch = RecordScratch::default();
                let mut line = Vec::new();
                loop {
                    let next = work_rx
                        .lock()
                        .map_err(|_| ())
                        .and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok(mut chunk) = next else { break };
                    chunk.process(ring, &settings.limits, window, &mut scratch, &mut line);
                    if done_tx.send(chunk).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let collector = scope.spawn(|| {
            let collected = collect(done_rx, spare_tx, ring, settings, run_time, &budget);
            // Whatever happened, the reader must not wait for room that will never come.
            budget.close();
            collected
        });

        let mut chunker = Chunker::new(spare_rx);
        let send = |chunk: Chunk| -> Result<(), EncoderStopped> {
            budget.take(chunk.weight)?;
            work_tx.send(chunk).map_err(|_| EncoderStopped)
        };
        let read =
            response::for_each_element(reader, limits, |element| match chunker.add(element) {
                Some(full) => send(full),
                None => Ok(()),
            })
            .and_then(|_| match chunker.rest() {
                Some(rest) => send(rest).map_err(Stop::Handler),
                None => Ok(()),
            });
        // Closing the work channel is what lets the workers, then the encoder, finish.
        drop(work_tx);
        let collected = collector.join().expect("the encoder thread does not panic");
        // An encoder failure explains a stopped reader; otherwise the reading error comes first.
        match (read, collected) {
            (_, Err(encode)) => Err(ParallelError::Encode(encode)),
            (Err(Stop::Response(read)), Ok(_)) => Err(ParallelError::Response(read)),
            (Err(Stop::Handler(EncoderStopped)), Ok(_)) => {
                unreachable!("the encoder stops only on an error")
            }
            (Ok(()), Ok(output)) => Ok(output),
        }
    })
}

/// Cuts the records into chunks by count and by bytes, into emptied chunks when there are.
struct Chunker {
    chunk: Chunk,
    bytes: usize,
    seq: u64,
    spares: Receiver<Chunk>,
}

impl Chunker {
    fn new(spares: Receiver<Chunk>) -> Self {
        Self {
            chunk: Chunk::default(),
            bytes: 0,
            seq: 0,
            spares,
        }
    }

    /// Adds an element; returns the chunk it completes, if it does.
    fn add(&mut self, element: Element<'_>) -> Option<Chunk> {
        self.bytes += element.len();
        let chunk = &mut self.chunk;
        match element {
            Element::Json(raw) => {
                chunk.text.push_str(raw.get());
                chunk.slots.push(Slot::Json {
                    end: chunk.text.len(),
                });
            }
            Element::NotJson { bytes, reason } => chunk.slots.push(Slot::NotJson {
                bytes: bytes.to_vec(),
                reason: reason.to_owned(),
            }),
        }
        (chunk.slots.len() >= CHUNK_RECORDS || self.bytes >= CHUNK_BYTES).then(|| self.cut())
    }

    /// The last, partial chunk, if any.
    fn rest(&mut self) -> Option<Chunk> {
        (!self.chunk.slots.is_empty()).then(|| self.cut())
    }

    fn cut(&mut self) -> Chunk {
        let next = self.spares.try_recv().unwrap_or_default();
        let mut chunk = std::mem::replace(&mut self.chunk, next);
        chunk.seq = self.seq;
        chunk.weight = std::mem::take(&mut self.bytes).saturating_mul(2);
        self.seq += 1;
        chunk
    }
}

/// Puts processed chunks back in source order, encodes them, gives their weight back and hands
/// their emptied buffers to the reader.
fn collect(
    done: Receiver<Chunk>,
    spares: Sender<Chunk>,
    ring: &KeyRing,
    settings: &BatchSettings,
    run_time: DateTime<Utc>,
    budget: &Budget,
) -> Result<BatchOutput, EncodeError> {
    let mut batch = Batch::new(ring, settings, run_time);
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for chunk in done {
        waiting.insert(chunk.seq, chunk);
        while let Some(chunk) = waiting.remove(&next) {
            chunk.encode(&mut batch)?;
            budget.give_back(chunk.weight);
            next += 1;
            // The reader may be gone already; the chunk is then simply dropped.
            if let Some(spare) = chunk.recycled() {
                let _ = spares.send(spare);
            }
        }
    }
    batch.finish()
}

/// The allowance of bytes in flight: taken by the reader before a chunk goes out, given back by
/// the encoder once the chunk is encoded.
struct Budget {
    state: Mutex<BudgetState>,
    changed: Condvar,
    limit: usize,
}

struct BudgetState {
    in_flight: usize,
    closed: bool,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(BudgetState {
                in_flight: 0,
                closed: false,
            }),
            changed: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `weight` fits (or nothing else is in flight), then takes it.
    fn take(&self, weight: usize) -> Result<(), EncoderStopped> {
        let mut state = self.lock();
        while !state.closed && state.in_flight > 0 && state.in_flight + weight > self.limit {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.closed {
            return Err(EncoderStopped);
        }
        state.in_flight += weight;
        Ok(())
    }

    fn give_back(&self, weight: usize) {
        self.lock().in_flight -= weight;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::layout::{ObjectLayout, PartitionStyle};
    use crate::local::synth::{Synth, SynthOptions, response_body};
    use crate::record::fernet::generate_key;
    use chrono::TimeZone;
    use serde_json::value::RawValue;

    fn objects(output: &BatchOutput) -> Vec<(String, Vec<u8>)> {
        output
            .objects
            .iter()
            .map(|o| (o.key.clone(), o.body.to_vec().unwrap()))
            .collect()
    }

    fn settings() -> BatchSettings {
        let layout = ObjectLayout::new("data", "quarantine", PartitionStyle::Flat).unwrap();
        BatchSettings::new(
            crate::batch::ObjectSettings::new(layout),
            crate::record::RecordLimits::default(),
        )
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
        let body = response_body(&Synth::new(options).batch(&ring, start, 3 * CHUNK_RECORDS + 17));
        let run_time = Utc.with_ymd_and_hms(2023, 3, 18, 16, 0, 0).unwrap();
        // When it is encoded one by one, and on 1, 2 and 4 workers
        let settings = settings();
        let mut batch = Batch::new(&ring, &settings, run_time);
        response::for_each_element(body.as_bytes(), ResponseLimits::none(), |element| {
            batch.push(element)
        })
        .unwrap();
        let sequential = batch.finish().unwrap();
        for workers in [1, 2, 4] {
            let parallel = encode_parallel(
                body.as_bytes(),
                &ring,
                &settings,
                ResponseLimits::none(),
                run_time,
                workers,
            )
            .unwrap();
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
    fn a_chunk_of_usual_records_allocates_nothing_per_record() {
        use crate::record::transcode::counting::allocations;
        // Given a response of usual records, and a chunk already used once (as the encoder hands
        // chunks back to the reader)
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 40, 0).unwrap();
        let body = response_body(&Synth::new(SynthOptions::default()).batch(&ring, start, 600));
        let settings = settings();
        let window = HourWindow::unbounded();
        let (mut scratch, mut line) = (RecordScratch::default(), Vec::new());
        let (spare_tx, spare_rx) = channel();
        let mut chunker = Chunker::new(spare_rx);
        let mut batch = Batch::new(&ring, &settings, start);
        let mut per_round = Vec::new();
        for round in 0..3 {
            // When a chunk of 200 records is cut, processed and encoded
            let mut seen = 0;
            let (count, ()) = allocations(|| {
                response::for_each_element(body.as_bytes(), ResponseLimits::none(), |element| {
                    seen += 1;
                    if (round * 200..(round + 1) * 200).contains(&seen) {
                        assert!(chunker.add(element).is_none());
                    }
                    Ok::<(), ()>(())
                })
                .unwrap();
            });
            let mut chunk = chunker.rest().unwrap();
            let (processing, ()) = allocations(|| {
                chunk.process(&ring, &settings.limits, &window, &mut scratch, &mut line)
            });
            let (encoding, ()) = allocations(|| chunk.encode(&mut batch).unwrap());
            per_round.push((count, processing, encoding));
            spare_tx.send(chunk.recycled().unwrap()).unwrap();
        }
        // Then, once the buffers have grown, the workers' part allocates nothing, and the
        // reader's (of 600 elements) and the encoder's far less than once per record (the
        // reader's own buffer, the gzip and the hash set growing now and then)
        let (reading, processing, encoding) = per_round[2];
        assert!(reading < 10, "{per_round:?}");
        assert_eq!(processing, 0, "{per_round:?}");
        assert!(encoding < 20, "{per_round:?}");
    }

    #[test]
    fn chunks_close_by_bytes_as_well_as_by_count() {
        // Given elements of 100 KiB
        let big = RawValue::from_string(format!("\"{}\"", "x".repeat(100 << 10))).unwrap();
        let (_spare_tx, spare_rx) = channel();
        let mut chunker = Chunker::new(spare_rx);
        // Then a chunk closes at its third element, past 256 KiB, weighing twice its bytes
        assert!(chunker.add(Element::Json(&big)).is_none());
        assert!(chunker.add(Element::Json(&big)).is_none());
        let chunk = chunker.add(Element::Json(&big)).expect("a full chunk");
        assert_eq!(chunk.slots.len(), 3);
        assert_eq!(chunk.weight, 2 * 3 * big.get().len());
        assert!(chunker.rest().is_none());
    }

    #[test]
    fn the_allowance_holds_the_reader_until_chunks_are_given_back() {
        // Given an allowance of 10 with 8 taken
        let budget = Arc::new(Budget::new(10));
        budget.take(8).unwrap();
        // When the reader asks for 5 more, it waits until 8 are given back
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || budget.take(5))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        budget.give_back(8);
        waiter.join().unwrap().unwrap();
        // and a weight over the whole allowance goes once nothing else is in flight
        budget.give_back(5);
        budget.take(50).unwrap();
        // and a closed allowance refuses instead of waiting
        budget.close();
        assert!(budget.take(1).is_err());
    }

    #[test]
    fn a_malformed_response_is_an_error_whatever_the_workers() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let run_time = Utc.with_ymd_and_hms(2023, 3, 18, 16, 0, 0).unwrap();
        let err = encode_parallel(
            &b"[{\"data\": \"x\"}, [oops}]"[..],
            &ring,
            &settings(),
            ResponseLimits::none(),
            run_time,
            2,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ParallelError::Response(ResponseError::Malformed { .. })
            ),
            "{err:?}"
        );
    }
}
