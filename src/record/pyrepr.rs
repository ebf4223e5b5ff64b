//! Python literal syntax, as `repr()` writes a dict: a parser into ordered JSON values and the
//! matching writer. Evaluates nothing: only literals are accepted, with bounded depth and length.
//!
//! Hand-written rather than taken from `py_literal`: that crate has no depth limit (hostile
//! input could exhaust the stack), builds its own value type that would need a second
//! conversion on the hot path, and cannot keep a number's exact text.

use serde_json::{Map, Number, Value};

/// Bounds the parser enforces; both guard against hostile plaintexts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Deepest nesting of dicts, lists and tuples accepted (the top-level dict is depth 1).
    pub max_depth: usize,
    /// Longest string accepted, in bytes after unescaping.
    pub max_string_len: usize,
}

/// Default of [`ParseLimits::max_depth`] (`MAX_NESTING_DEPTH`).
pub const DEFAULT_MAX_DEPTH: u64 = 32;
/// Default of [`ParseLimits::max_string_len`] (`MAX_STRING_BYTES`).
pub const DEFAULT_MAX_STRING_BYTES: u64 = 1 << 20;

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH as usize,
            max_string_len: DEFAULT_MAX_STRING_BYTES as usize,
        }
    }
}

/// Why a plaintext is not an acceptable Python literal. Carries byte offsets, never content.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReprError {
    #[error("unexpected end of input, expected {expected}")]
    UnexpectedEnd { expected: &'static str },
    #[error("unexpected character at byte {offset}, expected {expected}")]
    Unexpected {
        offset: usize,
        expected: &'static str,
    },
    #[error("{what} at byte {offset} cannot be represented in JSON")]
    Unsupported { offset: usize, what: &'static str },
    #[error("invalid escape sequence at byte {offset}")]
    InvalidEscape { offset: usize },
    #[error("dict key at byte {offset} is not a string")]
    NonStringKey { offset: usize },
    #[error("nesting deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("string at byte {offset} is longer than {max} bytes")]
    StringTooLong { offset: usize, max: usize },
    #[error("trailing characters at byte {offset}")]
    Trailing { offset: usize },
}

/// Parses one Python literal (the whole input) into a JSON value. Tuples become lists; sets,
/// bytes, complex numbers, `inf`/`nan`, non-string dict keys and lone surrogates are refused
/// because JSON cannot hold them.
pub fn parse(text: &str, limits: ParseLimits) -> Result<Value, ReprError> {
    let mut parser = Parser {
        text,
        src: text.as_bytes(),
        pos: 0,
        limits,
    };
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.src.len() {
        return Err(ReprError::Trailing { offset: parser.pos });
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    src: &'a [u8],
    pos: usize,
    limits: ParseLimits,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn unexpected(&self, expected: &'static str) -> ReprError {
        if self.pos >= self.src.len() {
            ReprError::UnexpectedEnd { expected }
        } else {
            ReprError::Unexpected {
                offset: self.pos,
                expected,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ReprError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.dict(depth + 1),
            Some(b'[') => self.sequence(depth + 1, b']').map(Value::Array),
            Some(b'(') => self.parenthesised(depth + 1),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9' | b'.') => self.number(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => self.word(),
            _ => Err(self.unexpected("a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), ReprError> {
        if depth > self.limits.max_depth {
            Err(ReprError::TooDeep {
                max: self.limits.max_depth,
            })
        } else {
            Ok(())
        }
    }

    /// After an element: consumes `,` and reports whether `close` follows (trailing comma allowed).
    fn after_element(&mut self, close: u8) -> Result<bool, ReprError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    return Ok(true);
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.unexpected("',' or a closing bracket")),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, ReprError> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            let key_at = self.pos;
            let key = match self.peek() {
                Some(b'\'' | b'"') => self.string()?,
                Some(_) => {
                    // Parse it anyway so a set literal gets the clearer message.
                    self.value(depth)?;
                    self.skip_ws();
                    return Err(if matches!(self.peek(), Some(b',' | b'}')) {
                        ReprError::Unsupported {
                            offset: key_at - 1,
                            what: "a set",
                        }
                    } else {
                        ReprError::NonStringKey { offset: key_at }
                    });
                }
                None => return Err(self.unexpected("a dict key")),
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(if matches!(self.peek(), Some(b',' | b'}')) {
                    ReprError::Unsupported {
                        offset: key_at,
                        what: "a set",
                    }
                } else {
                    self.unexpected("':'")
                });
            }
            self.pos += 1;
            let value = self.value(depth)?;
            // Python keeps the first position and the last value of a repeated key; so does
            // an insertion-ordered map.
            map.insert(key, value);
            if self.after_element(b'}')? {
                return Ok(Value::Object(map));
            }
        }
    }

    fn sequence(&mut self, depth: usize, close: u8) -> Result<Vec<Value>, ReprError> {
        self.enter(depth)?;
        self.pos += 1; // '[' or '('
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth)?);
            if self.after_element(close)? {
                return Ok(items);
            }
        }
    }

    /// `(x)` is `x`; `(x,)`, `(x, y)` and `()` are tuples, which JSON holds as lists.
    fn parenthesised(&mut self, depth: usize) -> Result<Value, ReprError> {
        self.enter(depth)?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(Value::Array(Vec::new()));
        }
        let first = self.value(depth)?;
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                return Ok(first);
            }
            Some(b',') => {}
            _ => return Err(self.unexpected("',' or ')'")),
        }
        // A tuple: go on from the comma, each element parsed once (parsing `first` again would
        // double the work at every level of `((…,),)`).
        let mut items = vec![first];
        while !self.after_element(b')')? {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn word(&mut self) -> Result<Value, ReprError> {
        let start = self.pos;
        while let Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_') = self.peek() {
            self.pos += 1;
        }
        match &self.src[start..self.pos] {
            b"None" => Ok(Value::Null),
            b"True" => Ok(Value::Bool(true)),
            b"False" => Ok(Value::Bool(false)),
            b"inf" | b"nan" => Err(ReprError::Unsupported {
                offset: start,
                what: "a non-finite float",
            }),
            [b'b' | b'B', ..] if matches!(self.peek(), Some(b'\'' | b'"')) => {
                Err(ReprError::Unsupported {
                    offset: start,
                    what: "a bytes literal",
                })
            }
            _ if matches!(self.peek(), Some(b'\'' | b'"')) => Err(ReprError::Unsupported {
                offset: start,
                what: "a prefixed string literal",
            }),
            _ => Err(ReprError::Unexpected {
                offset: start,
                expected: "None, True, False or a literal",
            }),
        }
    }

    fn number(&mut self) -> Result<Value, ReprError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            self.skip_ws();
            if matches!(self.peek(), Some(b'i' | b'n')) {
                return Err(ReprError::Unsupported {
                    offset: start,
                    what: "a non-finite float",
                });
            }
        }
        let digits_at = self.pos;
        while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-' | b'_') = self.peek() {
            // A sign is part of the number only right after an exponent marker.
            if matches!(self.peek(), Some(b'+' | b'-'))
                && !matches!(self.src.get(self.pos - 1), Some(b'e' | b'E'))
            {
                break;
            }
            self.pos += 1;
        }
        if matches!(self.peek(), Some(b'j' | b'J')) {
            return Err(ReprError::Unsupported {
                offset: start,
                what: "a complex number",
            });
        }
        if matches!(self.peek(), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
            return Err(ReprError::Unsupported {
                offset: start,
                what: "a non-decimal integer",
            });
        }
        // Python writes `-5` as a unary minus; whitespace between is legal there, not in JSON.
        let mut text = String::with_capacity(self.pos - start);
        if digits_at != start {
            text.push('-');
        }
        text.push_str(std::str::from_utf8(&self.src[digits_at..self.pos]).unwrap_or_default());
        text.parse::<Number>()
            .map(Value::Number)
            .map_err(|_| ReprError::Unsupported {
                offset: start,
                what: "a number not written as JSON writes it",
            })
    }

    fn string(&mut self) -> Result<String, ReprError> {
        let quote = self.src[self.pos];
        let open = self.pos;
        self.pos += 1;
        if self.src[self.pos..].starts_with(&[quote, quote]) {
            return Err(ReprError::Unsupported {
                offset: open,
                what: "a triple-quoted string",
            });
        }
        let mut out = String::new();
        loop {
            // Copy the plain run up to the next quote, backslash or line break in one go.
            let run_end = memchr::memchr3(quote, b'\\', b'\n', &self.src[self.pos..])
                .map(|n| self.pos + n)
                .ok_or(ReprError::UnexpectedEnd {
                    expected: "the closing quote",
                })?;
            // The stop bytes are ASCII, so both ends are char boundaries.
            out.push_str(&self.text[self.pos..run_end]);
            self.pos = run_end;
            if out.len() > self.limits.max_string_len {
                return Err(ReprError::StringTooLong {
                    offset: open,
                    max: self.limits.max_string_len,
                });
            }
            match self.src[self.pos] {
                b'\\' => self.escape(&mut out)?,
                b'\n' => return Err(self.unexpected("the closing quote")),
                _ => {
                    self.pos += 1;
                    return Ok(out);
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), ReprError> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(ReprError::UnexpectedEnd {
                expected: "an escape sequence",
            });
        };
        self.pos += 1;
        let simple = match c {
            b'\\' => Some('\\'),
            b'\'' => Some('\''),
            b'"' => Some('"'),
            b'a' => Some('\x07'),
            b'b' => Some('\x08'),
            b'f' => Some('\x0c'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(ch) = simple {
            out.push(ch);
            return Ok(());
        }
        let code = match c {
            b'\n' => return Ok(()), // line continuation
            b'x' => self.hex_digits(2, at)?,
            b'u' => self.hex_digits(4, at)?,
            b'U' => self.hex_digits(8, at)?,
            b'0'..=b'7' => {
                let mut code = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                code
            }
            b'N' => {
                return Err(ReprError::Unsupported {
                    offset: at,
                    what: "a named unicode escape",
                });
            }
            _ => {
                // Python keeps an unknown escape as written, backslash included.
                out.push('\\');
                self.pos -= 1;
                return Ok(());
            }
        };
        let ch = char::from_u32(code).ok_or(ReprError::Unsupported {
            offset: at,
            what: "a surrogate or out-of-range code point",
        })?;
        out.push(ch);
        Ok(())
    }

    fn hex_digits(&mut self, count: usize, at: usize) -> Result<u32, ReprError> {
        let digits = self
            .src
            .get(self.pos..self.pos + count)
            .ok_or(ReprError::InvalidEscape { offset: at })?;
        let mut code = 0u32;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or(ReprError::InvalidEscape { offset: at })?;
            code = code * 16 + v;
        }
        self.pos += count;
        Ok(code)
    }
}

/// Writes a JSON value as Python's `repr` would write the equivalent object, ASCII only
/// (non-ASCII characters escaped, as `ascii()` does). Lists stay lists; numbers keep their text.
pub fn to_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str_repr(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_repr(k, out);
                out.push_str(": ");
                write_repr(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's quote choice: single quotes unless the text has a `'` and no `"`.
fn write_str_repr(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(ch),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Result<Value, ReprError> {
        parse(text, ParseLimits::default())
    }

    #[test]
    fn parses_the_server_example() {
        let text = "{'user_id': '6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b', 'record_id': 98830, 'activity': 'purchase', 'url': '/api/products/product/', 'method': 'POST', 'name': 'json_logger', 'inDate': '2023-03-18T15:08:02.284Z', 'detail': {'message': 'POST purchase', 'levelname': 'INFO'}}";
        let v = p(text).unwrap();
        assert_eq!(v["record_id"], json!(98830));
        assert_eq!(v["detail"]["levelname"], json!("INFO"));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "user_id",
                "record_id",
                "activity",
                "url",
                "method",
                "name",
                "inDate",
                "detail"
            ]
        );
        // and the writer gives back the same text
        assert_eq!(to_repr(&v), text);
    }

    #[test]
    fn python_scalars_and_escapes() {
        let v = p(r#"{'a': None, 'b': True, 'c': False, 'd': -1.5e-05, 'e': "it's", 'f': 'a\'b\\c\nd\te\x00\u00e9\U0001f600', 'g': 'q\qz', 'h': '\101'}"#).unwrap();
        assert_eq!(
            v,
            json!({"a": null, "b": true, "c": false, "d": serde_json::from_str::<Value>("-1.5e-05").unwrap(),
                   "e": "it's", "f": "a'b\\c\nd\te\u{0}é😀", "g": "q\\qz", "h": "A"})
        );
        // the number keeps its exact text
        assert_eq!(v["d"].to_string(), "-1.5e-05");
    }

    #[test]
    fn tuples_lists_and_parentheses() {
        assert_eq!(
            p("{'t': (1, 2), 'u': (3,), 'e': (), 'p': (4), 'l': [1, [2, {}],]}").unwrap(),
            json!({"t": [1, 2], "u": [3], "e": [], "p": 4, "l": [1, [2, {}]]})
        );
    }

    #[test]
    fn big_integers_keep_their_digits() {
        let v = p("{'n': 123456789012345678901234567890}").unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"n":123456789012345678901234567890}"#
        );
    }

    #[test]
    fn repeated_key_keeps_first_position_last_value() {
        let v = p("{'a': 1, 'b': 2, 'a': 3}").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn refuses_what_json_cannot_hold() {
        for (text, what) in [
            ("{'a': {1, 2}}", "a set"),
            ("{'a': b'x'}", "a bytes literal"),
            ("{'a': 1j}", "a complex number"),
            ("{'a': inf}", "a non-finite float"),
            ("{'a': -inf}", "a non-finite float"),
            ("{'a': '\\ud800'}", "a surrogate or out-of-range code point"),
            ("{'a': 0x10}", "a non-decimal integer"),
            ("{'a': '''x'''}", "a triple-quoted string"),
        ] {
            match p(text) {
                Err(ReprError::Unsupported { what: w, .. }) => assert_eq!(w, what, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(p("{1: 'a'}"), Err(ReprError::NonStringKey { offset: 1 }));
    }

    #[test]
    fn refuses_code_and_garbage() {
        for text in [
            "__import__('os').system('true')",
            "{'a': open('x')}",
            "{'a': 1 + 2}",
            "{'a': 1",
            "{'a': 'unterminated}",
            "{'a': 1} trailing",
            "{'a'}",
            "",
        ] {
            assert!(p(text).is_err(), "{text}");
        }
    }

    #[test]
    fn nested_tuples_take_linear_time() {
        // Parsing each element once: 31 levels of `((…,),)` is instant, not hours.
        let nested = (1..31).fold("(1,)".to_string(), |s, _| format!("({s},)"));
        let started = std::time::Instant::now();
        let v = p(&format!("{{'t': {nested}}}")).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let mut depth = 0;
        let mut at = &v["t"];
        while let Value::Array(items) = at {
            depth += 1;
            at = &items[0];
        }
        assert_eq!((depth, at), (31, &json!(1)));
    }

    #[test]
    fn depth_and_length_are_bounded() {
        let limits = ParseLimits {
            max_depth: 4,
            max_string_len: 8,
        };
        assert!(parse("{'a': [[[1]]]}", limits).is_ok());
        assert_eq!(
            parse("{'a': [[[[1]]]]}", limits),
            Err(ReprError::TooDeep { max: 4 })
        );
        let deep = "[".repeat(100_000);
        assert!(matches!(p(&deep), Err(ReprError::TooDeep { .. })));
        assert!(matches!(
            parse("{'a': '123456789'}", limits),
            Err(ReprError::StringTooLong { max: 8, .. })
        ));
    }

    #[test]
    fn writer_chooses_quotes_like_python() {
        assert_eq!(to_repr(&json!("plain")), "'plain'");
        assert_eq!(to_repr(&json!("it's")), r#""it's""#);
        assert_eq!(to_repr(&json!("both ' and \"")), r#"'both \' and "'"#);
        assert_eq!(to_repr(&json!("é\u{7f}😀")), r"'\xe9\x7f\U0001f600'");
    }
}
