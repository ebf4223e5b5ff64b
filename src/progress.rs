//! How far long work has got, for a progress display: counters the work adds to once a chunk
//! (an object, a buffer of input), never once a record, and a display reads from another thread.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared counters of one run. Cloning shares them; the default counts into nothing anyone
/// reads, at the cost of an atomic add a chunk.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    objects: AtomicU64,
    objects_total: AtomicU64,
}

impl Progress {
    pub fn add_records(&self, n: u64) {
        self.counters.records.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_objects(&self, n: u64) {
        self.counters.objects.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds the objects a run will go through, once they are listed (each of several runs
    /// counted into one progress adds its own).
    pub fn add_objects_total(&self, n: u64) {
        self.counters.objects_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.counters.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    pub fn objects(&self) -> u64 {
        self.counters.objects.load(Ordering::Relaxed)
    }

    /// Zero until the run has listed what it will go through.
    pub fn objects_total(&self) -> u64 {
        self.counters.objects_total.load(Ordering::Relaxed)
    }

    /// `inner`, counting the bytes read from it (one add a read call: give it a buffered
    /// caller, or wrap a reader whose reads are large).
    pub fn reading<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            progress: self.clone(),
        }
    }
}

/// A reader that adds the bytes read to a [`Progress`].
pub struct CountingReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counting_reader_adds_every_byte_read_to_the_shared_counters() {
        // Given a progress shared with a clone, and a reader of 10,000 bytes counted into it
        let progress = Progress::default();
        let seen = progress.clone();
        let mut reader = progress.reading(&[7u8; 10_000][..]);
        // When it is read to the end
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        // Then the clone sees every byte
        assert_eq!(out.len(), 10_000);
        assert_eq!(seen.bytes(), 10_000);
        assert_eq!(seen.records(), 0);
    }
}
