//! The usual plaintext straight to its compact line: one pass over the Python `repr` of a dict
//! that parses, applies the field rules ([`fields`](crate::record::fields)) to each top-level
//! value as it is read, places the record by its `inDate` literal and writes the NDJSON line
//! into a caller's reused buffer. No tree, no allocation.
//!
//! It takes only a subset it is sure of, and hands everything else back (`None`) to the tree
//! path ([`payload`](crate::record::payload), then [`fields::shorten`](crate::record::fields))
//! that gives the reference result, line or error:
//! - the text starts `{'` (so the tree reads it as a Python literal too) and is ASCII;
//! - separators exactly as `repr` writes them (`, ` and `: `), no trailing comma, nothing after
//!   the closing brace;
//! - strings in either quote of printable ASCII with no backslash, no `"` and no `$` (so
//!   nothing JSON escapes, and never serde_json's reserved marker), well under the length limit;
//! - `None`, `True`, `False`, and integers written canonically with at most 18 digits (no `-0`,
//!   no float, no exponent, no underscore: a number whose JSON text could differ);
//! - dicts and lists, well under the depth limit, with no key repeated in a dict;
//! - the compacted fields at the top level holding a string, `None`, a boolean or an integer;
//! - an `inDate` that places the record inside the window (a refused record takes the tree,
//!   which names the reason).

use crate::record::fields::{Field, StrForm};
use crate::record::hour::{self, HourWindow, Placement};
use crate::record::pyrepr::ParseLimits;

/// Deepest container the transcoder takes whatever the limits say (the usual record: 2).
const MAX_DEPTH: usize = 16;
/// Most digits of an integer the transcoder copies as it is written.
const MAX_INTEGER_DIGITS: usize = 18;

/// Buffers the transcoder reuses from record to record.
#[derive(Debug, Default)]
pub struct TranscodeScratch {
    /// Spans of the keys of the dicts being read, innermost last, to refuse a repeated key.
    keys: Vec<(usize, usize)>,
}

/// Transcodes `plain` into `line` (cleared first) and returns its placement, or `None` when
/// the plaintext is outside the subset (`line` then holds nothing meaningful): the tree path
/// must decide.
pub fn transcode(
    plain: &[u8],
    limits: ParseLimits,
    window: &HourWindow,
    scratch: &mut TranscodeScratch,
    line: &mut Vec<u8>,
) -> Option<Placement> {
    line.clear();
    scratch.keys.clear();
    let mut reader = Reader {
        src: plain,
        pos: 0,
        out: line,
        keys: &mut scratch.keys,
        // Below the tree's own bound by one, so a record near it always takes the tree.
        max_depth: MAX_DEPTH.min(limits.max_depth.saturating_sub(1)),
        max_string: limits.max_string_len / 2,
    };
    let in_date = reader.record()?;
    let text = std::str::from_utf8(&plain[in_date.0..in_date.1]).ok()?;
    window.admit(hour::place_str(text).ok()?).ok()
}

struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
    out: &'a mut Vec<u8>,
    keys: &'a mut Vec<(usize, usize)>,
    max_depth: usize,
    max_string: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, expected: &[u8]) -> Option<()> {
        if self.src[self.pos..].starts_with(expected) {
            self.pos += expected.len();
            Some(())
        } else {
            None
        }
    }

    /// The top-level dict: the whole text. Returns the span of the `inDate` string.
    fn record(&mut self) -> Option<(usize, usize)> {
        if !self.src.starts_with(b"{'") {
            return None;
        }
        self.pos = 1;
        self.out.push(b'{');
        let mut in_date = None;
        let mut first = true;
        loop {
            let key = self.key(0, first)?;
            first = false;
            let field = match &self.src[key.0..key.1] {
                b"user_id" => Some(Field::UserId),
                b"method" => Some(Field::Method),
                b"inDate" => Some(Field::InDate),
                _ => None,
            };
            match field {
                Some(field) => {
                    let string = self.field_value(field)?;
                    if field == Field::InDate {
                        // A non-string inDate cannot be placed: the tree names why.
                        in_date = Some(string?);
                    }
                }
                None => self.value(1)?,
            }
            if !self.after_entry()? {
                break;
            }
        }
        (self.pos == self.src.len()).then_some(())?;
        self.out.push(b'}');
        in_date
    }

    /// Reads `'key': ` at the current position, refusing a key the dict already holds (its
    /// earlier keys are `keys[base..]`), and writes `"key":` (after a comma unless `first`).
    fn key(&mut self, base: usize, first: bool) -> Option<(usize, usize)> {
        let span = self.string_span()?;
        let key = &self.src[span.0..span.1];
        if self.keys[base..]
            .iter()
            .any(|&(s, e)| &self.src[s..e] == key)
        {
            return None;
        }
        self.keys.push(span);
        self.eat(b": ")?;
        if !first {
            self.out.push(b',');
        }
        self.push_string(span);
        self.out.push(b':');
        Some(span)
    }

    /// After a dict entry: `, ` and the next key's quote (true), or `}` (false).
    fn after_entry(&mut self) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.eat(b", ")?;
                matches!(self.peek()?, b'\'' | b'"').then_some(true)
            }
            b'}' => {
                self.pos += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A top-level value of a compacted field, written by its rule; the span of its text when
    /// it is a string (`Some(None)` for `None`, a boolean or an integer).
    fn field_value(&mut self, field: Field) -> Option<Option<(usize, usize)>> {
        match self.peek()? {
            b'\'' | b'"' => {
                let span = self.string_span()?;
                match field.write_short_str(&self.src[span.0..span.1], self.out) {
                    StrForm::Compact => {}
                    StrForm::AsIs => self.push_string(span),
                    StrForm::Escaped => {
                        self.out.extend_from_slice(br#"{"~":"#);
                        self.push_string(span);
                        self.out.push(b'}');
                    }
                }
                Some(Some(span))
            }
            b'-' | b'0'..=b'9' => {
                let (start, end) = self.integer_span()?;
                let digits = &self.src[start..end];
                if field.is_compact_integer(digits) {
                    self.out.extend_from_slice(br#"{"~":"#);
                    self.out.extend_from_slice(digits);
                    self.out.push(b'}');
                } else {
                    self.out.extend_from_slice(digits);
                }
                Some(None)
            }
            b'N' | b'T' | b'F' => self.word().map(|()| None),
            // A dict could be an escape look-alike, a list is rare: the tree decides.
            _ => None,
        }
    }

    /// Any value below the top level, at `depth` (the top-level dict's values are at 1).
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'\'' | b'"' => {
                let span = self.string_span()?;
                self.push_string(span);
                Some(())
            }
            b'-' | b'0'..=b'9' => {
                let (start, end) = self.integer_span()?;
                self.out.extend_from_slice(&self.src[start..end]);
                Some(())
            }
            b'N' | b'T' | b'F' => self.word(),
            b'{' => self.dict(depth + 1),
            b'[' => self.list(depth + 1),
            _ => None,
        }
    }

    fn dict(&mut self, depth: usize) -> Option<()> {
        (depth <= self.max_depth).then_some(())?;
        self.pos += 1;
        self.out.push(b'{');
        if self.peek()? == b'}' {
            self.pos += 1;
            self.out.push(b'}');
            return Some(());
        }
        let base = self.keys.len();
        let mut first = true;
        loop {
            self.key(base, first)?;
            first = false;
            self.value(depth)?;
            if !self.after_entry()? {
                break;
            }
        }
        self.keys.truncate(base);
        self.out.push(b'}');
        Some(())
    }

    fn list(&mut self, depth: usize) -> Option<()> {
        (depth <= self.max_depth).then_some(())?;
        self.pos += 1;
        self.out.push(b'[');
        if self.peek()? == b']' {
            self.pos += 1;
            self.out.push(b']');
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.peek()? {
                b',' => {
                    self.eat(b", ")?;
                    // A trailing comma: the tree takes it, this reader does not.
                    (self.peek()? != b']').then_some(())?;
                    self.out.push(b',');
                }
                b']' => {
                    self.pos += 1;
                    self.out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `None`, `True` or `False`, written as JSON. What follows is checked by the caller, which
    /// takes only a separator or a closing bracket.
    fn word(&mut self) -> Option<()> {
        let rest = &self.src[self.pos..];
        let (len, json): (usize, &[u8]) = if rest.starts_with(b"None") {
            (4, b"null")
        } else if rest.starts_with(b"True") {
            (4, b"true")
        } else if rest.starts_with(b"False") {
            (5, b"false")
        } else {
            return None;
        };
        self.pos += len;
        self.out.extend_from_slice(json);
        Some(())
    }

    /// A canonical integer: `0`, or an optional `-` and a non-zero digit and at most
    /// [`MAX_INTEGER_DIGITS`] digits in all (not `-0`). A `.`, `e`, `_`, `j` or `x` after it
    /// is refused by the caller, which takes only a separator or a closing bracket.
    fn integer_span(&mut self) -> Option<(usize, usize)> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        match self.peek()? {
            b'0' if !negative => self.pos += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return None,
        }
        (self.pos - digits_at <= MAX_INTEGER_DIGITS).then_some((start, self.pos))
    }

    /// A quoted string of plain bytes only: the span of its content.
    fn string_span(&mut self) -> Option<(usize, usize)> {
        let quote = self.peek()?;
        if !matches!(quote, b'\'' | b'"') {
            return None;
        }
        let start = self.pos + 1;
        let end = start + memchr::memchr(quote, &self.src[start..])?;
        let content = &self.src[start..end];
        // The content holds no `quote`; a `'` inside double quotes is plain, and every other
        // stop byte (an escape, a `"`, a control or non-ASCII byte, `$`) sends the text back.
        // Checked without an early exit, so that the check runs on whole vectors of bytes.
        let plain = content.iter().fold(true, |plain, &b| {
            plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\') & (b != b'$')
        });
        (plain && content.len() <= self.max_string).then_some(())?;
        self.pos = end + 1;
        Some((start, end))
    }

    fn push_string(&mut self, (start, end): (usize, usize)) {
        self.out.push(b'"');
        self.out.extend_from_slice(&self.src[start..end]);
        self.out.push(b'"');
    }
}

/// Counts the allocations each thread makes (the lib's unit tests only), so that a test can
/// show that the usual record allocates nothing.
#[cfg(test)]
pub(crate) mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn count() {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    // SAFETY: every call is passed on to the system allocator unchanged; counting touches only
    // a thread-local integer, which needs no allocation and has no destructor.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Allocations (and reallocations) this thread makes while running `f`.
    pub(crate) fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
        let before = ALLOCATIONS.with(Cell::get);
        let value = f();
        (ALLOCATIONS.with(Cell::get) - before, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Option<String> {
        let mut line = Vec::new();
        transcode(
            text.as_bytes(),
            ParseLimits::default(),
            &HourWindow::unbounded(),
            &mut TranscodeScratch::default(),
            &mut line,
        )
        .map(|_| String::from_utf8(line).unwrap())
    }

    #[test]
    fn the_server_example_becomes_the_compact_line() {
        // Given the design's example record
        let text = "{'user_id': '6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b', 'record_id': 98830, 'activity': 'purchase', 'url': '/api/products/product/', 'method': 'POST', 'name': 'json_logger', 'inDate': '2023-03-18T15:08:02.284Z', 'detail': {'message': 'POST purchase', 'levelname': 'INFO'}}";
        // When it is transcoded
        let line = run(text).expect("the usual record is in the subset");
        // Then the line is what the original script wrote
        assert_eq!(
            line,
            r#"{"user_id":"a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw","record_id":98830,"activity":"purchase","url":"/api/products/product/","method":2,"name":"json_logger","inDate":"230318150802284","detail":{"message":"POST purchase","levelname":"INFO"}}"#
        );
    }

    #[test]
    fn texts_outside_the_subset_are_handed_back() {
        let d = "'inDate': '2023-03-18T15:08:02.284Z'";
        for text in [
            format!("{{{d}, 'a': 1, 'a': 2}}"),
            format!("{{{d}, 'a': 1.0}}"),
            format!("{{{d}, 'a': -0}}"),
            format!("{{{d}, 'a': 1e5}}"),
            format!("{{{d}, 'a': '\\x41'}}"),
            format!("{{{d}, 'a': 'say \"hi\"'}}"),
            format!("{{{d}, 'a': 'é'}}"),
            format!("{{{d}, 'a': 'tab\there'}}"),
            format!("{{{d}, 'a': [1, ]}}"),
            format!("{{{d}, 'a': (1, 2)}}"),
            format!("{{{d}, 'a': 1,}}"),
            format!("{{{d}}} "),
            format!("{{{d},'a': 1}}"),
            format!("{{{d}, 'method': {{'~': 1}}}}"),
            format!("{{{d}, '$serde_json::private::Number': '1'}}"),
            format!("{{{d}, 'n': 1234567890123456789}}"),
            format!("{{{d}, 'd': {{'a': 1, 'a': 2}}}}"),
            format!("{{\"x\": 1, {d}}}"),
            "{'inDate': 5}".to_owned(),
            "{'a': 1}".to_owned(),
            "{'inDate': 'yesterday'}".to_owned(),
        ] {
            assert_eq!(run(&text), None, "{text}");
        }
    }

    #[test]
    fn look_alikes_of_compact_forms_are_escaped() {
        let line = run("{'user_id': 'a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw', 'method': 2, 'inDate': '2023-03-18T15:08:02.284Z', 'x': '230318150802284'}").unwrap();
        assert_eq!(
            line,
            r#"{"user_id":{"~":"a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw"},"method":{"~":2},"inDate":"230318150802284","x":"230318150802284"}"#
        );
    }

    #[test]
    fn nesting_deeper_than_the_margin_below_the_limit_is_handed_back() {
        let limits = ParseLimits {
            max_depth: 4,
            ..ParseLimits::default()
        };
        let mut line = Vec::new();
        let mut scratch = TranscodeScratch::default();
        let at = |nested: &str| {
            format!("{{'inDate': '2023-03-18T15:08:02.284Z', 'a': {nested}}}").into_bytes()
        };
        let window = HourWindow::unbounded();
        assert!(transcode(&at("[[1]]"), limits, &window, &mut scratch, &mut line).is_some());
        assert!(transcode(&at("[[[1]]]"), limits, &window, &mut scratch, &mut line).is_none());
    }
}
