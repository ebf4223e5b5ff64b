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
}

/// One element of the array: JSON, or bytes that are not (`NaN`, a raw control character,
/// invalid UTF-8…) while the array around them is well-formed. Such an element is the unit of
/// failure: it is quarantined as received, and the rest of the array is read on.
#[derive(Debug, Clone, Copy)]
pub enum Element<'a> {
    Json(&'a RawValue),
    NotJson {
        bytes: &'a [u8],
        /// What serde_json found wrong, with its place in the element (never its content).
        reason: &'a str,
    },
}

impl Element<'_> {
    /// Bytes of the element as received.
    pub fn len(&self) -> usize {
        match self {
            Element::Json(raw) => raw.get().len(),
            Element::NotJson { bytes, .. } => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A source record as received: the text of an element already read as one JSON value. It
/// borrows its text, so a record kept in a worker's buffer needs no copy of its own; the
/// [`RawValue`] it dereferences to is read again from the text only when it is asked for (a
/// record being quarantined), while its [`SourceJson::get`] and length cost nothing.
#[derive(Debug, Clone, Copy)]
pub struct SourceJson<'a>(&'a str);

impl<'a> SourceJson<'a> {
    /// The record's JSON text, as received.
    pub fn get(&self) -> &'a str {
        self.0
    }

    /// Text that was a [`RawValue`]'s (read as one JSON value by [`for_each_element`]).
    pub(crate) fn read_before(text: &'a str) -> Self {
        Self(text)
    }
}

impl<'a> From<&'a RawValue> for SourceJson<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Self(raw.get())
    }
}

impl std::ops::Deref for SourceJson<'_> {
    type Target = RawValue;

    fn deref(&self) -> &RawValue {
        // Every SourceJson is made from a RawValue's text: reading it again cannot fail.
        serde_json::from_str(self.0).expect("the text was read as one JSON value before")
    }
}

/// Why reading a response's elements stopped: the response itself, or the handler of an
/// element (its own error, passed through).
#[derive(Debug)]
pub enum Stop<E> {
    Response(ResponseError),
    Handler(E),
}

impl<E> From<ResponseError> for Stop<E> {
    fn from(err: ResponseError) -> Self {
        Stop::Response(err)
    }
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
/// past `limits.max_element`, or more elements than `limits.max_records`, stops the read; so
/// does an array that is not one (not an array, unclosed, brackets that do not match), while an
/// element that is not valid JSON inside a well-formed array is handed over as
/// [`Element::NotJson`].
///
/// The array's structure is scanned here, a chunk at a time, and each element is then checked
/// by serde_json: serde_json's own reader-based path reads byte by byte and was the largest
/// single cost of processing a saved response.
pub fn for_each_element<R: Read, E>(
    reader: R,
    limits: ResponseLimits,
    mut each: impl FnMut(Element<'_>) -> Result<(), E>,
) -> Result<u64, Stop<E>> {
    let mut chunks = Chunks {
        reader,
        max_element: limits.max_element,
        buf: Vec::with_capacity(CHUNK),
        open: Vec::new(),
        pos: 0,
        offset: 0,
        eof: false,
    };
    match chunks.next_non_ws()? {
        Some(b'[') => chunks.pos += 1,
        Some(b'{' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(ResponseError::NotAnArray.into());
        }
        Some(_) => return Err(chunks.malformed(None).into()),
        None => return Err(ResponseError::Truncated.into()),
    }
    let mut count = 0;
    if chunks.next_non_ws()? == Some(b']') {
        chunks.pos += 1;
    } else {
        loop {
            if count == limits.max_records {
                return Err(ResponseError::TooManyRecords {
                    max: limits.max_records,
                }
                .into());
            }
            let (start, end) = chunks.element()?;
            let text = trim_end(&chunks.buf[start..end]);
            let handled = match serde_json::from_slice::<&RawValue>(text) {
                Ok(raw) => each(Element::Json(raw)),
                Err(e) => each(Element::NotJson {
                    bytes: text,
                    reason: &format!("element is not valid JSON ({e})"),
                }),
            };
            handled.map_err(Stop::Handler)?;
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
        Some(_) => Err(chunks.malformed(None).into()),
    }
}

const CHUNK: usize = 1 << 20;

struct Chunks<R> {
    reader: R,
    max_element: usize,
    buf: Vec<u8>,
    /// The brackets open in the element being read (kept, so no element allocates its own).
    open: Vec<u8>,
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
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        let found = self.element_from(start, &mut open);
        self.open = open;
        found
    }

    /// [`Chunks::element`] from `start`, with `open` (empty) for the brackets.
    fn element_from(
        &mut self,
        start: usize,
        open: &mut Vec<u8>,
    ) -> Result<(usize, usize), ResponseError> {
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

    /// The elements of `text`, those that are not JSON marked with `!`.
    fn collect(text: &str) -> Result<Vec<String>, ResponseError> {
        let mut out = Vec::new();
        let read = for_each_element(text.as_bytes(), ResponseLimits::none(), |element| {
            out.push(match element {
                Element::Json(raw) => raw.get().to_owned(),
                Element::NotJson { bytes, .. } => format!("!{}", String::from_utf8_lossy(bytes)),
            });
            Ok::<(), ()>(())
        });
        match read {
            Ok(_) => Ok(out),
            Err(Stop::Response(err)) => Err(err),
            Err(Stop::Handler(())) => unreachable!("the handler never fails"),
        }
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
        for bad in ["[1] [2]", "[1,,2]", "[1,]", "[{]", "[}]", "[1 2"] {
            assert!(
                matches!(
                    collect(bad),
                    Err(ResponseError::Malformed { .. } | ResponseError::Truncated)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_element_that_is_not_json_is_handed_over_as_received_and_the_rest_read_on() {
        // Given a well-formed array holding NaN, Infinity, a raw control character, invalid
        // UTF-8 and two elements that are not JSON values
        let mut text =
            br#"[{"data": "a", "ArrivalTimeStamp": NaN}, {"x": Infinity}, "tab	here", "#.to_vec();
        text.extend_from_slice(b"{\"data\": \"\xff\"}, tru, 1 2, {\"data\": \"b\"}]");
        // When it is read
        let mut seen = Vec::new();
        for_each_element(&text[..], ResponseLimits::none(), |element| {
            seen.push(match element {
                Element::Json(raw) => (true, raw.get().as_bytes().to_vec(), String::new()),
                Element::NotJson { bytes, reason } => (false, bytes.to_vec(), reason.to_owned()),
            });
            Ok::<(), ()>(())
        })
        .unwrap();
        // Then every element comes out in order, the broken ones as their bytes with a reason
        let kinds: Vec<bool> = seen.iter().map(|(json, ..)| *json).collect();
        assert_eq!(kinds, [false, false, false, false, false, false, true]);
        assert_eq!(seen[0].1, br#"{"data": "a", "ArrivalTimeStamp": NaN}"#);
        assert_eq!(seen[3].1, b"{\"data\": \"\xff\"}");
        assert!(
            seen[0].2.starts_with("element is not valid JSON ("),
            "{}",
            seen[0].2
        );
        assert_eq!(seen[6].1, br#"{"data": "b"}"#);
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
        let mut seen = 0;
        let err = for_each_element(&b"[1, 2, 3]"[..], ResponseLimits::none(), |_| {
            seen += 1;
            Err("disk full")
        })
        .unwrap_err();
        assert!(matches!(err, Stop::Handler("disk full")), "{err:?}");
        assert_eq!(seen, 1);
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
        let Err(Stop::Response(err)) = for_each_element(text.as_bytes(), limits, |_| {
            seen += 1;
            Ok::<(), ()>(())
        }) else {
            panic!("the read should stop")
        };
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
        let Err(Stop::Response(err)) = for_each_element(&b"[0,0,0,0,0]"[..], limits, |_| {
            seen += 1;
            Ok::<(), ()>(())
        }) else {
            panic!("the read should stop")
        };
        assert_eq!(seen, 3);
        assert_eq!(
            err.to_string(),
            "response holds more than 3 records (MAX_RECORDS_PER_RESPONSE)"
        );
        assert_eq!(
            for_each_element(&b"[0,0,0]"[..], limits, |_| Ok::<(), ()>(())).unwrap(),
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
