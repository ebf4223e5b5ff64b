//! NDJSON lines into a deterministic gzip body, with the content digest that names the object.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::batch::spool::{Body, Spool, SpoolPolicy};

/// How objects are encoded. The file extension, `Content-Encoding` and `Content-Type` all come
/// from here so they cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectEncoding {
    /// Newline-delimited JSON, gzip-compressed: what Athena's JSON SerDe reads.
    GzipNdjson,
}

impl ObjectEncoding {
    pub const fn extension(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson => "json.gz",
        }
    }

    pub const fn content_encoding(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson => "gzip",
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson => "application/x-ndjson",
        }
    }
}

/// gzip level used unless configured. Chosen by `cargo bench --bench pipeline`: on log records
/// level 6 is within 5% of level 9's size and 15% faster (figures in the README).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// Hex digits of the SHA-256 content digest kept in object names (64 bits).
pub const DIGEST_HEX_LEN: usize = 16;

/// Writes lines into one gzip body and digests the uncompressed content as it goes.
pub struct ObjectWriter {
    /// Buffered so the compressor and its CRC see large chunks, not one call per line.
    gzip: BufWriter<GzEncoder<Spool>>,
    digest: Sha256,
    lines: u64,
    uncompressed: u64,
}

/// A finished body with what is known about its content.
#[derive(Debug)]
pub struct EncodedBody {
    pub body: Body,
    /// First [`DIGEST_HEX_LEN`] hex digits of the SHA-256 of the uncompressed content.
    pub digest: String,
    pub lines: u64,
    pub uncompressed: u64,
}

impl ObjectWriter {
    /// A writer at gzip `level` (0–9). The gzip header carries no time, name or OS, so equal
    /// input gives equal bytes.
    pub fn new(level: u32, spool: &SpoolPolicy) -> Self {
        let gzip = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Spool::new(spool), Compression::new(level));
        Self {
            gzip: BufWriter::with_capacity(64 * 1024, gzip),
            digest: Sha256::new(),
            lines: 0,
            uncompressed: 0,
        }
    }

    /// Appends one line; `line` must not contain a newline.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.digest.update(line);
        self.digest.update(b"\n");
        self.gzip.write_all(line)?;
        self.gzip.write_all(b"\n")?;
        self.lines += 1;
        self.uncompressed += line.len() as u64 + 1;
        Ok(())
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn finish(self) -> io::Result<EncodedBody> {
        let gzip = self
            .gzip
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let body = gzip.finish()?.finish()?;
        Ok(EncodedBody {
            body,
            digest: short_digest(&self.digest.finalize()),
            lines: self.lines,
            uncompressed: self.uncompressed,
        })
    }
}

/// Default of [`ReadLimits::max_object_bytes`] (`MAX_OBJECT_BYTES`): far more than an hour of
/// the source's records, even compacted into one object.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 4 << 30;
/// Default of [`ReadLimits::max_line_bytes`] (`MAX_LINE_BYTES`): room for the largest quarantine
/// line a saved response can make (an element of twice `MAX_RECORD_BYTES`, at least 16 MiB, as
/// base64), while a line without end stops well inside the function's memory.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 32 << 20;

/// Bounds on reading a stored object: a bucket may hold objects others wrote, so nothing read
/// back is trusted to be what this code writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Decompressed bytes of one object.
    pub max_object_bytes: u64,
    /// Bytes of one line.
    pub max_line_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES as usize,
        }
    }
}

/// Why a stored object cannot be read as one this code writes. Such an object is *unreadable*:
/// reported by key, never deleted, and it blocks nothing else.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("it is not gzip")]
    NotGzip,
    #[error("it is truncated or corrupt")]
    Corrupt(#[source] io::Error),
    #[error("it expands past {max} bytes (MAX_OBJECT_BYTES)")]
    TooLarge { max: u64 },
    #[error("line {line} is longer than {max} bytes (MAX_LINE_BYTES)")]
    LineTooLong { line: u64, max: usize },
    #[error("line {line} is not a JSON object")]
    NotAnObject { line: u64 },
}

/// The lines of an encoded object read from `gzipped` within `limits`, newlines removed, empty
/// lines skipped (the inverse of [`ObjectWriter`]; several gzip members in a row are read as
/// one). Each line is checked to be a JSON object. The first error ends the lines.
pub fn read_lines<R: Read>(gzipped: R, limits: ReadLimits) -> Lines<R> {
    Lines {
        source: Some(BufReader::with_capacity(1 << 16, gzipped)),
        text: None,
        limits,
        line: 0,
        done: false,
    }
}

/// The lines of a stored object, read within bounds ([`read_lines`]).
pub struct Lines<R: Read> {
    /// The compressed bytes, until the gzip header has been checked.
    source: Option<BufReader<R>>,
    text: Option<BufReader<io::Take<MultiGzDecoder<BufReader<R>>>>>,
    limits: ReadLimits,
    line: u64,
    done: bool,
}

impl<R: Read> Lines<R> {
    fn text(
        &mut self,
    ) -> Result<&mut BufReader<io::Take<MultiGzDecoder<BufReader<R>>>>, Unreadable> {
        if let Some(mut source) = self.source.take() {
            let head = source.fill_buf().map_err(Unreadable::Corrupt)?;
            if !head.starts_with(&[0x1f, 0x8b]) {
                return Err(Unreadable::NotGzip);
            }
            // One byte over the bound tells an object at the bound from one past it.
            let decoded = MultiGzDecoder::new(source).take(self.limits.max_object_bytes + 1);
            self.text = Some(BufReader::with_capacity(1 << 16, decoded));
        }
        Ok(self
            .text
            .as_mut()
            .expect("the text reader exists once the header is checked"))
    }

    /// The next line (without its newline), `None` at the end.
    fn next_line(&mut self) -> Result<Option<Vec<u8>>, Unreadable> {
        let (max_line, max_object) = (self.limits.max_line_bytes, self.limits.max_object_bytes);
        let number = self.line + 1;
        let text = self.text()?;
        let mut line = Vec::new();
        loop {
            let chunk = text.fill_buf().map_err(Unreadable::Corrupt)?;
            if chunk.is_empty() {
                if text.get_ref().limit() == 0 {
                    return Err(Unreadable::TooLarge { max: max_object });
                }
                return Ok((!line.is_empty()).then_some(line));
            }
            let (taken, ends) = match memchr::memchr(b'\n', chunk) {
                Some(at) => (at, true),
                None => (chunk.len(), false),
            };
            if line.len() + taken > max_line {
                return Err(Unreadable::LineTooLong {
                    line: number,
                    max: max_line,
                });
            }
            line.extend_from_slice(&chunk[..taken]);
            text.consume(taken + usize::from(ends));
            if ends {
                return Ok(Some(line));
            }
        }
    }
}

impl<R: Read> Iterator for Lines<R> {
    type Item = Result<Vec<u8>, Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let line = match self.next_line() {
                Ok(Some(line)) if line.is_empty() => continue,
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            self.line += 1;
            let object = line.first() == Some(&b'{')
                && serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok();
            if !object {
                self.done = true;
                return Some(Err(Unreadable::NotAnObject { line: self.line }));
            }
            return Some(Ok(line));
        }
        self.done = true;
        None
    }
}

fn short_digest(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest[..DIGEST_HEX_LEN / 2]
        .iter()
        .fold(String::with_capacity(DIGEST_HEX_LEN), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    fn encode(lines: &[&str], level: u32) -> EncodedBody {
        let mut w = ObjectWriter::new(level, &SpoolPolicy::in_memory());
        for line in lines {
            w.write_line(line.as_bytes()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn body_gunzips_to_the_lines() {
        let out = encode(&[r#"{"a":1}"#, r#"{"b":2}"#], DEFAULT_GZIP_LEVEL);
        let mut text = String::new();
        GzDecoder::new(&out.body.to_vec().unwrap()[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(out.lines, 2);
        assert_eq!(out.uncompressed, 16);
    }

    #[test]
    fn same_input_same_bytes_and_digest() {
        let a = encode(&["x", "y"], 6);
        let b = encode(&["x", "y"], 6);
        assert_eq!(a.body.to_vec().unwrap(), b.body.to_vec().unwrap());
        // digest is of the uncompressed content: `printf 'x\ny\n' | sha256sum`
        assert_eq!(a.digest, "09834d488008f5f1");
        // header: magic, deflate, no flags, mtime 0, xfl, OS unknown
        assert_eq!(
            &a.body.to_vec().unwrap()[..10][..8],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]
        );
        assert_eq!(a.body.to_vec().unwrap()[9], 255);
    }

    #[test]
    fn digest_ignores_compression_level() {
        assert_eq!(encode(&["x", "y"], 1).digest, encode(&["x", "y"], 9).digest);
    }

    fn read(body: &[u8], limits: ReadLimits) -> Result<Vec<Vec<u8>>, Unreadable> {
        read_lines(body, limits).collect()
    }

    #[test]
    fn lines_come_back_as_written() {
        let body = encode(&[r#"{"a":1}"#, r#"{"b":[2]}"#], 6)
            .body
            .to_vec()
            .unwrap();
        let lines = read(&body, ReadLimits::default()).unwrap();
        assert_eq!(lines, [br#"{"a":1}"#.to_vec(), br#"{"b":[2]}"#.to_vec()]);
    }

    #[test]
    fn objects_that_are_not_what_this_code_writes_are_unreadable_by_name() {
        // Given a plain file, a truncated object, an object past its bound, a line past its
        // bound and a line that is not a JSON object
        let body = encode(&[r#"{"a":1}"#, r#"{"b":2}"#], 6)
            .body
            .to_vec()
            .unwrap();
        let tight = ReadLimits {
            max_object_bytes: 10,
            max_line_bytes: 1 << 20,
        };
        let short_lines = ReadLimits {
            max_object_bytes: 1 << 20,
            max_line_bytes: 5,
        };
        let not_json = encode(&[r#"{"a":1}"#, "[1]"], 6).body.to_vec().unwrap();
        // Then each is refused saying why
        let cases: [(&[u8], ReadLimits, &str); 6] = [
            (b"{\"a\":1}\n", ReadLimits::default(), "it is not gzip"),
            (b"", ReadLimits::default(), "it is not gzip"),
            (
                &body[..body.len() - 9],
                ReadLimits::default(),
                "it is truncated or corrupt",
            ),
            (&body, tight, "it expands past 10 bytes (MAX_OBJECT_BYTES)"),
            (
                &body,
                short_lines,
                "line 1 is longer than 5 bytes (MAX_LINE_BYTES)",
            ),
            (
                &not_json,
                ReadLimits::default(),
                "line 2 is not a JSON object",
            ),
        ];
        for (bytes, limits, reason) in cases {
            let err = read(bytes, limits).unwrap_err();
            assert_eq!(err.to_string(), reason);
        }
    }

    #[test]
    fn a_line_without_end_stops_at_its_bound_without_reading_on() {
        // Given 3 MiB of zeros without a newline, compressed to a few KiB
        let mut bomb = GzBuilder::new().write(Vec::new(), Compression::new(1));
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..3 {
            bomb.write_all(&zeros).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        // When it is read with a 1 MiB line bound
        let limits = ReadLimits {
            max_object_bytes: u64::MAX - 1,
            max_line_bytes: 1 << 20,
        };
        let mut lines = read_lines(&bomb[..], limits);
        // Then the first line fails at the bound
        assert!(matches!(
            lines.next(),
            Some(Err(Unreadable::LineTooLong { line: 1, .. }))
        ));
        assert!(lines.next().is_none());
    }

    #[test]
    fn encoding_names_agree() {
        let e = ObjectEncoding::GzipNdjson;
        assert_eq!(
            (e.extension(), e.content_encoding(), e.content_type()),
            ("json.gz", "gzip", "application/x-ndjson")
        );
    }
}
