//! The source API's response: a JSON array of records, read whole (a scheduled pass) or
//! element by element from a reader (a saved response of any size).

use std::io::{self, Read};

use serde_json::value::RawValue;

/// Default most records a response may hold (`MAX_RECORDS_PER_RESPONSE`): far more than the
/// source's batch of 100, few enough that a pass over them fits the function's memory and time.
pub const DEFAULT_MAX_RECORDS_PER_RESPONSE: u64 = 100_000;

/// Largest single element a streamed response may hold, given the record size limit: records
/// over the limit are quarantined whole, so an element up to twice the limit (and at least
/// 16 MiB) is still read; past that the read stops, keeping memory bounded (a saved response has
/// no overall size limit).
pub fn element_limit(max_record_bytes: usize) -> usize {
    max_record_bytes.saturating_mul(2).max(16 << 20)
}

/// Why a response is not a batch of records.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("response is not a JSON array")]
    NotAnArray,
    #[error("response is not valid JSON ({position})")]
    Malformed {
        position: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("response ends before the array is closed")]
    Truncated,
    #[error("an element at byte {offset} is larger than {max} bytes")]
    ElementTooLarge { offset: u64, max: usize },
    #[error("response holds more than {max} records (MAX_RECORDS_PER_RESPONSE)")]
    TooManyRecords { max: u64 },
    #[error("reading the response failed")]
    Io(#[source] io::Error),
    #[error("handling a record failed")]
    Sink(#[source] io::Error),
}

/// What one response may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Largest element, in bytes (see [`element_limit`]).
    pub max_element: usize,
    /// Most elements.
    pub max_records: u64,
}

impl ResponseLimits {
    /// No limit.
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            max_element: usize::MAX,
            max_records: u64::MAX,
        }
    }
}

/// Calls `each` with every element of the JSON array read from `reader`, in order, holding one
/// element (and one read chunk) in memory at a time. Returns the number of elements. An element
/// past `limits.max_element`, or more elements than `limits.max_records`, stops the read.
///
/// The array's structure is scanned here, a chunk at a time, and each element is then checked
/// by serde_json: serde_json's own reader-based path reads byte by byte and was the largest
/// single cost of processing a saved response.
pub fn for_each_record<R: Read>(
    reader: R,
    limits: ResponseLimits,
    mut each: impl FnMut(&RawValue) -> io::Result<()>,
) -> Result<u64, ResponseError> {
    let mut chunks = Chunks {
        reader,
        max_element: limits.max_element,
        buf: Vec::with_capacity(CHUNK),
        pos: 0,
        offset: 0,
        eof: false,
    };
    match chunks.next_non_ws()? {
        Some(b'[') => chunks.pos += 1,
        Some(b'{' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(ResponseError::NotAnArray);
        }
        Some(_) => return Err(chunks.malformed(None)),
        None => return Err(ResponseError::Truncated),
    }
    let mut count = 0;
    if chunks.next_non_ws()? == Some(b']') {
        chunks.pos += 1;
    } else {
        loop {
            if count == limits.max_records {
                return Err(ResponseError::TooManyRecords {
                    max: limits.max_records,
                });
            }
            let (start, end) = chunks.element()?;
            let text = trim_end(&chunks.buf[start..end]);
            let raw: &RawValue =
                serde_json::from_slice(text).map_err(|e| ResponseError::Malformed {
                    position: format!("element at byte {}", chunks.offset + start as u64),
                    source: Some(e),
                })?;
            each(raw).map_err(ResponseError::Sink)?;
            count += 1;
            let terminator = chunks.buf[end];
            chunks.pos = end + 1;
            if terminator == b']' {
                break;
            }
        }
    }
    match chunks.next_non_ws()? {
        None => Ok(count),
        Some(_) => Err(chunks.malformed(None)),
    }
}

const CHUNK: usize = 1 << 20;

struct Chunks<R> {
    reader: R,
    max_element: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of the input before `buf[0]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Chunks<R> {
    /// Reads one more chunk onto the end of the buffer; false at end of input.
    fn read_more(&mut self) -> Result<bool, ResponseError> {
        if self.eof {
            return Ok(false);
        }
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(ResponseError::Io)?,
            }
        };
        self.buf.truncate(old + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Drops what has been consumed, so the buffer holds only the unread part.
    fn compact(&mut self) {
        self.buf.drain(..self.pos);
        self.offset += self.pos as u64;
        self.pos = 0;
    }

    fn next_non_ws(&mut self) -> Result<Option<u8>, ResponseError> {
        loop {
            while let Some(&b) = self.buf.get(self.pos) {
                if !b.is_ascii_whitespace() {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            self.compact();
            if !self.read_more()? {
                return Ok(None);
            }
        }
    }

    /// Finds the next element: `(start, end)` where `buf[end]` is the `,` or `]` after it.
    fn element(&mut self) -> Result<(usize, usize), ResponseError> {
        if self.next_non_ws()?.is_none() {
            return Err(ResponseError::Truncated);
        }
        // Keep the buffer from growing without end: only the current element is held.
        if self.pos >= CHUNK {
            self.compact();
        }
        let start = self.pos;
        // Open brackets of the element so far, to catch `[{]`.
        let mut open: Vec<u8> = Vec::new();
        let (mut i, mut in_string) = (start, false);
        loop {
            if i >= self.buf.len() {
                if self.buf.len() - start > self.max_element {
                    return Err(ResponseError::ElementTooLarge {
                        offset: self.offset + start as u64,
                        max: self.max_element,
                    });
                }
                if !self.read_more()? {
                    return Err(ResponseError::Truncated);
                }
                continue;
            }
            if in_string {
                match memchr::memchr2(b'"', b'\\', &self.buf[i..]) {
                    None => i = self.buf.len(),
                    // An escape's second byte may not have been read yet.
                    Some(n) if self.buf[i + n] == b'\\' => {
                        if i + n + 1 >= self.buf.len() {
                            i += n;
                            if !self.read_more()? {
                                return Err(ResponseError::Truncated);
                            }
                        } else {
                            i += n + 2;
                        }
                    }
                    Some(n) => {
                        in_string = false;
                        i += n + 1;
                    }
                }
                continue;
            }
            match self.buf[i] {
                b'"' => in_string = true,
                b'{' => open.push(b'}'),
                b'[' => open.push(b']'),
                b',' | b']' if open.is_empty() => {
                    if i == start {
                        return Err(self.malformed(Some(i)));
                    }
                    return Ok((start, i));
                }
                // The guard pops the matching opener; a mismatch is an error.
                close @ (b'}' | b']') if open.pop() != Some(close) => {
                    return Err(self.malformed(Some(i)));
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn malformed(&self, at: Option<usize>) -> ResponseError {
        ResponseError::Malformed {
            position: format!("byte {}", self.offset + at.unwrap_or(self.pos) as u64),
            source: None,
        }
    }
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Result<Vec<String>, ResponseError> {
        let mut out = Vec::new();
        for_each_record(text.as_bytes(), ResponseLimits::none(), |raw| {
            out.push(raw.get().to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn elements_come_out_exactly_as_written() {
        let text = r#" [ {"data": "a", "x": 1.50}, {"data":"b"} ] "#;
        assert_eq!(
            collect(text).unwrap(),
            [r#"{"data": "a", "x": 1.50}"#, r#"{"data":"b"}"#]
        );
    }

    #[test]
    fn an_empty_array_is_an_empty_batch() {
        assert!(collect("[]").unwrap().is_empty());
    }

    #[test]
    fn non_arrays_and_broken_json_are_named() {
        assert!(matches!(
            collect(r#"{"data": 1}"#),
            Err(ResponseError::NotAnArray)
        ));
        assert!(matches!(collect("\"x\""), Err(ResponseError::NotAnArray)));
        assert!(matches!(
            collect(r#"[{"data": 1},"#),
            Err(ResponseError::Truncated)
        ));
        assert!(matches!(
            collect(r#"[{"data": "1"#),
            Err(ResponseError::Truncated)
        ));
        assert!(matches!(collect(""), Err(ResponseError::Truncated)));
        assert!(matches!(collect("[1,"), Err(ResponseError::Truncated)));
        let err = collect("<html>502</html>").unwrap_err();
        assert_eq!(err.to_string(), "response is not valid JSON (byte 0)");
        for bad in ["[1] [2]", "[1,,2]", "[1,]", "[{]", "[}]", "[tru]", "[1 2]"] {
            assert!(
                matches!(collect(bad), Err(ResponseError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn strings_with_brackets_escapes_and_chunk_boundaries_are_split_right() {
        // Given elements longer than a read chunk, with brackets, commas and escapes in strings
        let long = "x".repeat(CHUNK + 7);
        let items = [
            format!(r#"{{"data": "{long}", "a": "],[{{\\\"}}"}}"#),
            r#"["\\", {"k": [1, {"z": null}]}]"#.to_owned(),
            format!(r#""{long}\"""#),
        ];
        let text = format!("[{}]", items.join(" ,\n "));
        // When the array is read as a stream
        let got = collect(&text).unwrap();
        // Then each element comes out whole, as serde_json reads the array too
        assert_eq!(got, items);
    }

    #[test]
    fn a_failing_handler_stops_the_read_with_its_error() {
        let err = for_each_record(&b"[1, 2, 3]"[..], ResponseLimits::none(), |_| {
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        match err {
            ResponseError::Sink(e) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_element_past_the_limit_stops_the_read_with_its_offset() {
        // Given a response whose second element is far larger than the limit
        let big = format!(r#"{{"data": "{}"}}"#, "x".repeat(3 * CHUNK));
        let text = format!(r#"[{{"data": "a"}}, {big}, {{"data": "b"}}]"#);
        // When it is read with a limit of one chunk
        let mut seen = 0;
        let limits = ResponseLimits {
            max_element: CHUNK,
            max_records: u64::MAX,
        };
        let err = for_each_record(text.as_bytes(), limits, |_| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        // Then the read stops there, naming where, after handing out the first element
        assert_eq!(seen, 1);
        assert_eq!(
            err.to_string(),
            format!("an element at byte 16 is larger than {CHUNK} bytes")
        );
        // and with a limit above its size, it is read whole
        assert_eq!(collect(&text).unwrap()[1], big);
    }

    #[test]
    fn more_records_than_the_limit_stop_the_read_before_the_one_over() {
        let limits = ResponseLimits {
            max_element: usize::MAX,
            max_records: 3,
        };
        let mut seen = 0;
        let err = for_each_record(&b"[0,0,0,0,0]"[..], limits, |_| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, 3);
        assert_eq!(
            err.to_string(),
            "response holds more than 3 records (MAX_RECORDS_PER_RESPONSE)"
        );
        assert_eq!(
            for_each_record(&b"[0,0,0]"[..], limits, |_| Ok(())).unwrap(),
            3
        );
    }

    #[test]
    fn the_element_limit_leaves_room_for_records_to_be_quarantined_whole() {
        assert_eq!(element_limit(1 << 20), 16 << 20);
        assert_eq!(element_limit(64 << 20), 128 << 20);
        assert_eq!(element_limit(usize::MAX), usize::MAX);
    }
}
