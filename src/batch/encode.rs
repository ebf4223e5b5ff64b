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

/// The lines of an encoded object read from `gzipped`, newlines removed, empty lines skipped
/// (the inverse of [`ObjectWriter`]; several gzip members in a row are read as one).
pub fn lines(gzipped: impl Read) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    BufReader::with_capacity(1 << 16, MultiGzDecoder::new(gzipped))
        .split(b'\n')
        .filter(|line| !matches!(line, Ok(l) if l.is_empty()))
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

    #[test]
    fn encoding_names_agree() {
        let e = ObjectEncoding::GzipNdjson;
        assert_eq!(
            (e.extension(), e.content_encoding(), e.content_type()),
            ("json.gz", "gzip", "application/x-ndjson")
        );
    }
}
