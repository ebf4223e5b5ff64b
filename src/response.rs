//! The source API's response: a JSON array of records, read whole (a scheduled pass) or
//! element by element from a reader (a saved response of any size).

use std::io::{self, Read};

use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;

/// Why a response is not a batch of records.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("response is not a JSON array")]
    NotAnArray,
    #[error("response is not valid JSON (line {line}, column {column})")]
    Malformed {
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("response ends before the array is closed")]
    Truncated(#[source] serde_json::Error),
    #[error("reading the response failed")]
    Io(#[source] io::Error),
    #[error("handling a record failed")]
    Sink(#[source] io::Error),
}

impl ResponseError {
    fn from_json(err: serde_json::Error) -> Self {
        match err.classify() {
            Category::Data => ResponseError::NotAnArray,
            Category::Eof => ResponseError::Truncated(err),
            Category::Syntax => ResponseError::Malformed {
                line: err.line(),
                column: err.column(),
                source: err,
            },
            Category::Io => ResponseError::Io(err.into()),
        }
    }
}

/// Splits a whole response body into its records, borrowing each from `body`.
pub fn parse_response(body: &[u8]) -> Result<Vec<&RawValue>, ResponseError> {
    serde_json::from_slice(body).map_err(ResponseError::from_json)
}

/// Calls `each` with every element of the JSON array read from `reader`, in order, holding one
/// element in memory at a time. Returns the number of elements.
pub fn for_each_record<R: Read>(
    reader: R,
    each: impl FnMut(&RawValue) -> io::Result<()>,
) -> Result<u64, ResponseError> {
    let mut sink_error = None;
    let mut de =
        serde_json::Deserializer::from_reader(io::BufReader::with_capacity(1 << 20, reader));
    let visitor = EachElement {
        each,
        sink_error: &mut sink_error,
    };
    let result = de
        .deserialize_seq(visitor)
        .and_then(|n| de.end().map(|()| n));
    match (result, sink_error) {
        (_, Some(err)) => Err(ResponseError::Sink(err)),
        (Ok(n), None) => Ok(n),
        (Err(err), None) => Err(ResponseError::from_json(err)),
    }
}

struct EachElement<'s, F> {
    each: F,
    sink_error: &'s mut Option<io::Error>,
}

impl<'de, F: FnMut(&RawValue) -> io::Result<()>> Visitor<'de> for EachElement<'_, F> {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<u64, A::Error> {
        let mut count = 0;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if let Err(err) = (self.each)(&raw) {
                *self.sink_error = Some(err);
                return Err(de::Error::custom("record handler failed"));
            }
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Result<Vec<String>, ResponseError> {
        let mut out = Vec::new();
        for_each_record(text.as_bytes(), |raw| {
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
        let whole = parse_response(text.as_bytes()).unwrap();
        assert_eq!(whole[0].get(), r#"{"data": "a", "x": 1.50}"#);
    }

    #[test]
    fn an_empty_array_is_an_empty_batch() {
        assert!(collect("[]").unwrap().is_empty());
        assert!(parse_response(b"[]").unwrap().is_empty());
    }

    #[test]
    fn non_arrays_and_broken_json_are_named() {
        assert!(matches!(
            collect(r#"{"data": 1}"#),
            Err(ResponseError::NotAnArray)
        ));
        assert!(matches!(
            parse_response(b"\"x\""),
            Err(ResponseError::NotAnArray)
        ));
        assert!(matches!(
            collect(r#"[{"data": 1},"#),
            Err(ResponseError::Truncated(_))
        ));
        assert!(matches!(
            parse_response(b"<html>502</html>"),
            Err(ResponseError::Malformed {
                line: 1,
                column: 1,
                ..
            })
        ));
        assert!(matches!(
            collect("[1] [2]"),
            Err(ResponseError::Malformed { .. })
        ));
    }

    #[test]
    fn a_failing_handler_stops_the_read_with_its_error() {
        let err =
            for_each_record(&b"[1, 2, 3]"[..], |_| Err(io::Error::other("disk full"))).unwrap_err();
        match err {
            ResponseError::Sink(e) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("{other:?}"),
        }
    }
}
