//! What a batch keeps on the side in its spill folder: the overflow (records of hours that could
//! not be open when they came, read back and split by hour at the end) and each finished
//! object's sorted line hashes (merged at the end to learn which objects of one hour share no
//! record). Both are spill files ([`Spool`]): 0600, in the run's private folder, removed when
//! dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, Read, Write};

use chrono::{DateTime, TimeDelta};

use crate::batch::spool::{Body, Spool, SpoolPolicy};
use crate::record::hour::{Hour, Stamp};

/// Bytes of an entry's head: the hour (its first second, `i64`), the stamp (`mmssSSS` as a
/// number, `u32`) and the line's length (`u32`), little-endian; the line follows.
const HEAD_BYTES: usize = 16;

/// Bytes each reader of a hash list buffers while the lists are merged.
const MERGE_BUFFER_BYTES: usize = 8 << 10;

/// Appends one record (its hour, stamp and line) to an overflow.
pub(crate) fn write_entry(
    out: &mut impl Write,
    hour: Hour,
    stamp: Stamp,
    line: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(line.len()).map_err(|_| invalid("a line over 4 GiB"))?;
    let mut head = [0u8; HEAD_BYTES];
    head[..8].copy_from_slice(&hour.start().timestamp().to_le_bytes());
    head[8..12].copy_from_slice(&stamp_number(stamp).to_le_bytes());
    head[12..].copy_from_slice(&len.to_le_bytes());
    out.write_all(&head)?;
    out.write_all(line)
}

/// The stamp as the number it is written as (`mmssSSS`). `Stamp` keeps its value private to the
/// record stage; its text is the contract.
fn stamp_number(stamp: Stamp) -> u32 {
    stamp.to_string().parse().unwrap_or_default()
}

/// The stamp written as `number` in `hour`: the same stamp, made again from its instant.
fn stamp_of(hour: Hour, number: u32) -> Stamp {
    let (minute, second, milli) = (number / 100_000, number / 1000 % 100, number % 1000);
    let into_hour = i64::from(minute) * 60_000 + i64::from(second) * 1000 + i64::from(milli);
    Stamp::of(hour.start() + TimeDelta::milliseconds(into_hour))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("overflow: {what}"))
}

/// The entries of an overflow, in the order written.
pub(crate) struct Entries<R: Read> {
    reader: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> Entries<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader: BufReader::with_capacity(64 << 10, reader),
            line: Vec::new(),
        }
    }

    /// The next entry, `None` at the end.
    pub(crate) fn next_entry(&mut self) -> io::Result<Option<(Hour, Stamp, &[u8])>> {
        if self.reader.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut head = [0u8; HEAD_BYTES];
        self.reader.read_exact(&mut head)?;
        let seconds = i64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let number = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[12..].try_into().expect("4 bytes")) as usize;
        let start = DateTime::from_timestamp(seconds, 0).ok_or_else(|| invalid("an hour"))?;
        let hour = Hour::of(start);
        self.line.clear();
        self.line.resize(len, 0);
        self.reader.read_exact(&mut self.line)?;
        Ok(Some((hour, stamp_of(hour, number), &self.line)))
    }
}

/// A spill file's policy with no memory kept before the file: what the batch keeps on the side
/// costs its buffer only, however many such files are open at once.
pub(crate) fn straight_to_file(policy: &SpoolPolicy) -> SpoolPolicy {
    SpoolPolicy {
        memory_limit: 0,
        ..policy.clone()
    }
}

/// The sorted hashes of an object's lines, kept as a spill file under `policy`.
pub(crate) fn hash_list(hashes: &[u64], policy: &SpoolPolicy) -> io::Result<Body> {
    let mut spool = Spool::new(&straight_to_file(policy));
    let mut bytes = Vec::with_capacity(8 * 4096);
    for chunk in hashes.chunks(4096) {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|h| h.to_le_bytes()));
        spool.write_all(&bytes)?;
    }
    spool.finish_scratch()
}

/// For each list of sorted, distinct hashes in `lists`, whether it shares a hash with another
/// list: a merge of all of them, one buffer each.
pub(crate) fn shared_hashes(lists: &[&Body]) -> io::Result<Vec<bool>> {
    let mut readers = lists
        .iter()
        .map(|body| Ok(BufReader::with_capacity(MERGE_BUFFER_BYTES, body.reader()?)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some(hash) = next_hash(reader)? {
            heap.push(Reverse((hash, i)));
        }
    }
    let mut shared = vec![false; lists.len()];
    let mut last: Option<(u64, usize)> = None;
    while let Some(Reverse((hash, i))) = heap.pop() {
        if let Some((last_hash, j)) = last
            && last_hash == hash
        {
            shared[i] = true;
            shared[j] = true;
        }
        last = Some((hash, i));
        if let Some(next) = next_hash(&mut readers[i])? {
            heap.push(Reverse((next, i)));
        }
    }
    Ok(shared)
}

fn next_hash(reader: &mut impl BufRead) -> io::Result<Option<u64>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut bytes = [0u8; 8];
    reader.read_exact(&mut bytes)?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn an_entry_reads_back_as_written() {
        // Given two entries, one at the last millisecond of its hour
        let at = |m, s, ms| {
            Utc.with_ymd_and_hms(2023, 3, 18, 15, m, s).unwrap() + TimeDelta::milliseconds(ms)
        };
        let (a, b) = (at(8, 2, 284), at(59, 59, 999));
        let mut out = Vec::new();
        write_entry(&mut out, Hour::of(a), Stamp::of(a), br#"{"a":1}"#).unwrap();
        write_entry(&mut out, Hour::of(b), Stamp::of(b), b"").unwrap();
        // When they are read back, then hour, stamp and line are the same
        let mut entries = Entries::new(&out[..]);
        let (hour, stamp, line) = entries.next_entry().unwrap().unwrap();
        assert_eq!(
            (hour, stamp, line),
            (Hour::of(a), Stamp::of(a), &br#"{"a":1}"#[..])
        );
        let (hour, stamp, line) = entries.next_entry().unwrap().unwrap();
        assert_eq!((hour, stamp, line.len()), (Hour::of(b), Stamp::of(b), 0));
        assert!(entries.next_entry().unwrap().is_none());
    }

    #[test]
    fn a_truncated_overflow_is_an_error_not_an_end() {
        let at = Utc.with_ymd_and_hms(2023, 3, 18, 15, 0, 0).unwrap();
        let mut out = Vec::new();
        write_entry(&mut out, Hour::of(at), Stamp::of(at), b"abc").unwrap();
        let mut entries = Entries::new(&out[..out.len() - 1]);
        assert!(entries.next_entry().is_err());
    }

    #[test]
    fn lists_sharing_a_hash_are_told_from_those_that_share_none() {
        // Given three sorted lists, the first and third sharing 7
        let policy = SpoolPolicy::in_memory();
        let lists = [
            hash_list(&[1, 7, 9], &policy).unwrap(),
            hash_list(&[2, 8], &policy).unwrap(),
            hash_list(&[3, 7], &policy).unwrap(),
        ];
        // When they are merged, then the first and third share, the second does not
        let refs: Vec<&Body> = lists.iter().collect();
        assert_eq!(shared_hashes(&refs).unwrap(), [true, false, true]);
    }
}
