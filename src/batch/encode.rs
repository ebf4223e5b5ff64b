//! NDJSON lines into a deterministic gzip or zstd body, with the content digest that names the
//! object, and the bounded reading back of either (told apart by their magic bytes).

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::batch::spool::{Body, Spool, SpoolPolicy};

/// How objects are encoded (`COMPRESSION`). The file extension, `Content-Encoding` and
/// `Content-Type` all come from here so they cannot drift apart. Athena reads both by their
/// extension; every reader here reads both whatever is configured ([`read_lines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectEncoding {
    /// Newline-delimited JSON, gzip-compressed (`.json.gz`): the default.
    #[default]
    GzipNdjson,
    /// Newline-delimited JSON, zstd-compressed (`.json.zst`).
    ZstdNdjson,
}

impl ObjectEncoding {
    /// Every encoding: what [`ObjectLayout::is_object`](crate::batch::layout::ObjectLayout)
    /// accepts and [`read_lines`] reads.
    pub const ALL: [ObjectEncoding; 2] = [ObjectEncoding::GzipNdjson, ObjectEncoding::ZstdNdjson];

    pub const fn extension(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson => "json.gz",
            ObjectEncoding::ZstdNdjson => "json.zst",
        }
    }

    pub const fn content_encoding(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson => "gzip",
            ObjectEncoding::ZstdNdjson => "zstd",
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            ObjectEncoding::GzipNdjson | ObjectEncoding::ZstdNdjson => "application/x-ndjson",
        }
    }

    /// The encoding whose magic bytes `head` starts with: gzip `1f 8b`; zstd `28 b5 2f fd`, or a
    /// zstd skippable frame (`5?  2a 4d 18`), which a zstd stream may start with.
    pub fn of_magic(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(ObjectEncoding::GzipNdjson),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(ObjectEncoding::ZstdNdjson),
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Some(ObjectEncoding::ZstdNdjson),
            _ => None,
        }
    }
}

impl FromStr for ObjectEncoding {
    type Err = UnknownEncoding;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" | "" => Ok(ObjectEncoding::GzipNdjson),
            "zstd" => Ok(ObjectEncoding::ZstdNdjson),
            _ => Err(UnknownEncoding),
        }
    }
}

impl fmt::Display for ObjectEncoding {
    /// The `COMPRESSION` value: `gzip` or `zstd` (also the `Content-Encoding`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.content_encoding())
    }
}

/// A `COMPRESSION` value that is neither `gzip` nor `zstd`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gzip or zstd")]
pub struct UnknownEncoding;

/// gzip level used unless configured. Chosen by `cargo bench --bench pipeline`: on log records
/// level 6 is within 5% of level 9's size and 15% faster (figures in the README).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// zstd level used unless configured (`ZSTD_LEVEL`): the library's own default. On the usual
/// records it makes objects 43% smaller than gzip 6, in an eighth of the time (see the README's
/// Performance); level 19 is a third smaller again, at over a thousand times the time.
pub const DEFAULT_ZSTD_LEVEL: u32 = 3;

/// The window a zstd frame may need, at most (2^27 = 128 MiB, as `zstd -d` allows without
/// `--memory`): a frame asking for more is unreadable rather than a large allocation. Frames
/// written here need 2 MiB (level 3) to 8 MiB (level 19).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Hex digits of the SHA-256 content digest kept in object names (64 bits).
pub const DIGEST_HEX_LEN: usize = 16;

/// Writes lines into one gzip or zstd body and digests the uncompressed content as it goes.
pub struct ObjectWriter {
    sink: Sink,
    lines: u64,
    uncompressed: u64,
}

/// Where the lines are compressed and digested.
enum Sink {
    /// On the caller's thread (boxed: the compressor's state is most of the writer).
    Here(Box<Encoder>),
    /// On a thread of the writer's own (see [`ObjectWriter::compressing_apart`]).
    Apart(Apart),
}

/// The compressor of a body and the digest of its content, fed line by line.
struct Encoder {
    /// Buffered so the compressor and its checksum see large chunks, not one call per line.
    body: BufWriter<Compressor>,
    digest: Sha256,
}

impl Encoder {
    fn new(encoding: ObjectEncoding, level: u32, spool: &SpoolPolicy) -> Self {
        let spool = Spool::new(spool);
        let body = match encoding {
            ObjectEncoding::GzipNdjson => Compressor::Gzip(
                GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(spool, Compression::new(level)),
            ),
            ObjectEncoding::ZstdNdjson => Compressor::zstd(spool, level),
        };
        Self {
            body: BufWriter::with_capacity(64 * 1024, body),
            digest: Sha256::new(),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.digest.update(line);
        self.digest.update(b"\n");
        self.body.write_all(line)?;
        self.body.write_all(b"\n")
    }

    fn finish(self) -> io::Result<(Body, String)> {
        let body = self
            .body
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .finish()?
            .finish()?;
        Ok((body, short_digest(&self.digest.finalize())))
    }
}

/// Lines gathered into blocks of about [`BLOCK_BYTES`], handed in order to the thread that
/// compresses them; at most [`BLOCKS_IN_FLIGHT`] wait for it, so the writer holds a bounded
/// number of bytes however far ahead its caller is. Emptied blocks come back to be filled again.
struct Apart {
    block: Vec<u8>,
    blocks: Option<SyncSender<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<(Body, String)>>>,
}

/// Bytes of lines handed to a compressor thread at a time.
const BLOCK_BYTES: usize = 64 * 1024;
/// Blocks waiting for a compressor thread, at most.
const BLOCKS_IN_FLIGHT: usize = 2;

impl Apart {
    fn start(encoding: ObjectEncoding, level: u32, spool: &SpoolPolicy) -> io::Result<Self> {
        let mut encoder = Encoder::new(encoding, level, spool);
        let (blocks, received) = sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (give_back, spent) = sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("log-etl-compress".to_owned())
            .spawn(move || {
                for mut block in received {
                    // Line by line, as on the caller's thread: the same calls give the same bytes.
                    for line in block.split_inclusive(|&b| b == b'\n') {
                        encoder.write_line(&line[..line.len() - 1])?;
                    }
                    block.clear();
                    let _ = give_back.try_send(block);
                }
                encoder.finish()
            })?;
        Ok(Self {
            block: Vec::with_capacity(BLOCK_BYTES + 1024),
            blocks: Some(blocks),
            spent,
            thread: Some(thread),
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.block.extend_from_slice(line);
        self.block.push(b'\n');
        if self.block.len() >= BLOCK_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Sends the block being filled to the thread; if the thread has stopped, its error.
    fn hand_over(&mut self) -> io::Result<()> {
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_BYTES + 1024));
        let full = std::mem::replace(&mut self.block, next);
        let sent = self.blocks.as_ref().map(|blocks| blocks.send(full));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.join().err().unwrap_or_else(|| {
                io::Error::other("the compressor thread stopped before its body was finished")
            })),
        }
    }

    fn join(&mut self) -> io::Result<(Body, String)> {
        self.blocks = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compressor thread panicked"))),
            None => Err(io::Error::other("the compressor thread already ended")),
        }
    }

    fn finish(mut self) -> io::Result<(Body, String)> {
        if !self.block.is_empty() {
            self.hand_over()?;
        }
        self.join()
    }
}

impl Drop for Apart {
    fn drop(&mut self) {
        // An abandoned writer: the thread ends once its channel closes; its body is dropped.
        self.blocks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
    /// A gzip writer at `level` (0–9).
    pub fn new(level: u32, spool: &SpoolPolicy) -> Self {
        Self::encoding(ObjectEncoding::GzipNdjson, level, spool)
    }

    /// A writer of `encoding` at `level` (gzip 0–9, zstd 1–19). Equal input gives equal bytes:
    /// the gzip header carries no time, name or OS; the zstd frame's parameters are pinned
    /// ([`Compressor::zstd`]).
    pub fn encoding(encoding: ObjectEncoding, level: u32, spool: &SpoolPolicy) -> Self {
        Self::with_sink(Sink::Here(Box::new(Encoder::new(encoding, level, spool))))
    }

    /// The same writer, compressing and digesting on a thread of its own, so that the caller
    /// (the one thread that puts records in order) goes on while a block is compressed. The
    /// bytes are those of [`ObjectWriter::encoding`]: the thread makes the same calls in the
    /// same order.
    pub fn compressing_apart(
        encoding: ObjectEncoding,
        level: u32,
        spool: &SpoolPolicy,
    ) -> io::Result<Self> {
        Apart::start(encoding, level, spool).map(|apart| Self::with_sink(Sink::Apart(apart)))
    }

    fn with_sink(sink: Sink) -> Self {
        Self {
            sink,
            lines: 0,
            uncompressed: 0,
        }
    }

    /// Appends one line; `line` must not contain a newline.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Here(encoder) => encoder.write_line(line)?,
            Sink::Apart(apart) => apart.write_line(line)?,
        }
        self.lines += 1;
        self.uncompressed += line.len() as u64 + 1;
        Ok(())
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn finish(self) -> io::Result<EncodedBody> {
        let (body, digest) = match self.sink {
            Sink::Here(encoder) => (*encoder).finish()?,
            Sink::Apart(apart) => apart.finish()?,
        };
        Ok(EncodedBody {
            body,
            digest,
            lines: self.lines,
            uncompressed: self.uncompressed,
        })
    }
}

/// The compressor of a body, writing into its spool.
enum Compressor {
    Gzip(GzEncoder<Spool>),
    Zstd(zstd::stream::write::Encoder<'static, Spool>),
    /// A zstd context that refused its parameters; the error is the first write's.
    Refused(Option<io::Error>),
}

impl Compressor {
    /// One zstd frame whose header depends on the level alone: a checksum (XXH64 of the
    /// content, as gzip has its CRC, so a damaged object reads as corrupt), no content size (a
    /// streamed body's is unknown, and an empty one's would otherwise be written), no dictionary
    /// id, no long-distance matching, one thread.
    fn zstd(spool: Spool, level: u32) -> Self {
        let level = level.min(19) as i32;
        let made = zstd::stream::write::Encoder::new(spool, level).and_then(|mut zstd| {
            zstd.include_checksum(true)?;
            zstd.include_contentsize(false)?;
            zstd.include_dictid(false)?;
            zstd.long_distance_matching(false)?;
            Ok(zstd)
        });
        match made {
            Ok(zstd) => Compressor::Zstd(zstd),
            Err(err) => Compressor::Refused(Some(err)),
        }
    }

    /// The finished body.
    fn finish(self) -> io::Result<Spool> {
        match self {
            Compressor::Gzip(gzip) => gzip.finish(),
            Compressor::Zstd(zstd) => zstd.finish(),
            Compressor::Refused(err) => Err(refused(err)),
        }
    }
}

fn refused(err: Option<io::Error>) -> io::Error {
    err.unwrap_or_else(|| io::Error::other("the zstd compressor refused its parameters"))
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(gzip) => gzip.write(buf),
            Compressor::Zstd(zstd) => zstd.write(buf),
            Compressor::Refused(err) => Err(refused(err.take())),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(gzip) => gzip.flush(),
            Compressor::Zstd(zstd) => zstd.flush(),
            Compressor::Refused(err) => Err(refused(err.take())),
        }
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
    #[error("it is neither gzip nor zstd")]
    NotEncoded,
    #[error("it is truncated or corrupt")]
    Corrupt(#[source] io::Error),
    #[error("it expands past {max} bytes (MAX_OBJECT_BYTES)")]
    TooLarge { max: u64 },
    #[error("line {line} is longer than {max} bytes (MAX_LINE_BYTES)")]
    LineTooLong { line: u64, max: usize },
    #[error("line {line} is not a JSON object")]
    NotAnObject { line: u64 },
}

/// The lines of an encoded object read from `encoded` within `limits`, newlines removed, empty
/// lines skipped (the inverse of [`ObjectWriter`]). The encoding is told by the object's magic
/// bytes, not by its name or the configured one, so an hour may hold both; several gzip members
/// or zstd frames in a row are read as one. Each line is checked to be a JSON object. The first
/// error ends the lines.
pub fn read_lines<R: Read>(encoded: R, limits: ReadLimits) -> Lines<R> {
    Lines {
        source: Some(encoded),
        text: None,
        limits,
        line: 0,
        done: false,
    }
}

/// The lines of a stored object, read within bounds ([`read_lines`]).
pub struct Lines<R: Read> {
    /// The compressed bytes, until their magic bytes have been checked.
    source: Option<R>,
    text: Option<BufReader<io::Take<Decompressor<R>>>>,
    limits: ReadLimits,
    line: u64,
    done: bool,
}

impl<R: Read> Lines<R> {
    fn text(&mut self) -> Result<&mut BufReader<io::Take<Decompressor<R>>>, Unreadable> {
        if let Some(source) = self.source.take() {
            // One byte over the bound tells an object at the bound from one past it.
            let decoded = Decompressor::of(source)?.take(self.limits.max_object_bytes + 1);
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

/// The decompressor of a stored object, chosen by its magic bytes.
enum Decompressor<R: Read> {
    /// Boxed: its state is larger than zstd's handle, and one is made per object read.
    Gzip(Box<MultiGzDecoder<Compressed<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, Compressed<R>>),
}

/// The compressed bytes of an object: its first bytes (read to tell its encoding), then the rest.
type Compressed<R> = BufReader<io::Chain<io::Cursor<Vec<u8>>, R>>;

impl<R: Read> Decompressor<R> {
    fn of(mut source: R) -> Result<Self, Unreadable> {
        // A magic number is 4 bytes at most; a stream may give them in several reads.
        let mut head = Vec::with_capacity(4);
        (&mut source)
            .take(4)
            .read_to_end(&mut head)
            .map_err(Unreadable::Corrupt)?;
        let encoding = ObjectEncoding::of_magic(&head);
        let source = BufReader::with_capacity(1 << 16, io::Cursor::new(head).chain(source));
        match encoding {
            Some(ObjectEncoding::GzipNdjson) => {
                Ok(Decompressor::Gzip(Box::new(MultiGzDecoder::new(source))))
            }
            Some(ObjectEncoding::ZstdNdjson) => {
                let mut zstd = zstd::stream::read::Decoder::with_buffer(source)
                    .map_err(Unreadable::Corrupt)?;
                zstd.window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(Unreadable::Corrupt)?;
                Ok(Decompressor::Zstd(zstd))
            }
            None => Err(Unreadable::NotEncoded),
        }
    }
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::Gzip(gzip) => gzip.read(buf),
            Decompressor::Zstd(zstd) => zstd.read(buf),
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
    fn a_body_compressed_on_its_own_thread_is_the_same_bytes_and_digest() {
        // Given lines filling several blocks, an empty line and a short last block among them
        let lines: Vec<String> = (0..30_000)
            .map(|i| match i % 997 {
                0 => String::new(),
                _ => format!(
                    r#"{{"record_id":{i},"url":"/api/products/{}"}}"#,
                    i * 7919 % 104729
                ),
            })
            .collect();
        for (encoding, level) in [
            (ObjectEncoding::GzipNdjson, DEFAULT_GZIP_LEVEL),
            (ObjectEncoding::ZstdNdjson, DEFAULT_ZSTD_LEVEL),
        ] {
            // When they are written on the caller's thread and on a thread of the writer's own
            let spool = SpoolPolicy::in_memory();
            let mut here = ObjectWriter::encoding(encoding, level, &spool);
            let mut apart = ObjectWriter::compressing_apart(encoding, level, &spool).unwrap();
            for line in &lines {
                here.write_line(line.as_bytes()).unwrap();
                apart.write_line(line.as_bytes()).unwrap();
            }
            let (here, apart) = (here.finish().unwrap(), apart.finish().unwrap());
            // Then the bodies, digests and counts are the same, and the lines read back
            let body = here.body.to_vec().unwrap();
            assert!(body == apart.body.to_vec().unwrap(), "{encoding:?}");
            assert_eq!(
                (here.digest, here.lines, here.uncompressed),
                (apart.digest, apart.lines, apart.uncompressed)
            );
            let read: Vec<Vec<u8>> = read_lines(&body[..], ReadLimits::default())
                .map(Result::unwrap)
                .collect();
            let expected: Vec<&[u8]> = lines
                .iter()
                .map(|l| l.as_bytes())
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(read, expected, "{encoding:?}");
        }
    }

    #[test]
    fn a_writer_abandoned_before_its_end_stops_its_thread_and_leaves_no_spill_file() {
        // Given a writer compressing on its own thread into a spill file, blocks handed over
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolPolicy::spill_to(dir.path().to_owned(), 0);
        let mut apart =
            ObjectWriter::compressing_apart(ObjectEncoding::GzipNdjson, DEFAULT_GZIP_LEVEL, &spool)
                .unwrap();
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        for i in 0..200_000u64 {
            let n = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            apart
                .write_line(format!("{{\"n\":{n}}}").as_bytes())
                .unwrap();
        }
        // (the thread compresses behind the writer: wait, bounded, for its file)
        let started = std::time::Instant::now();
        while files() == 0 && started.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(files(), 1);
        // When it is dropped unfinished (a run failing midway)
        drop(apart);
        // Then its thread has ended and dropped the half-written body with its file
        assert_eq!(files(), 0);
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
            (
                b"{\"a\":1}\n",
                ReadLimits::default(),
                "it is neither gzip nor zstd",
            ),
            (b"", ReadLimits::default(), "it is neither gzip nor zstd"),
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
        let names = ObjectEncoding::ALL.map(|e| {
            (
                e.to_string(),
                e.extension(),
                e.content_encoding(),
                e.content_type(),
            )
        });
        assert_eq!(
            names,
            [
                ("gzip".into(), "json.gz", "gzip", "application/x-ndjson"),
                ("zstd".into(), "json.zst", "zstd", "application/x-ndjson"),
            ]
        );
        for e in ObjectEncoding::ALL {
            assert_eq!(e.to_string().parse::<ObjectEncoding>(), Ok(e));
        }
        assert_eq!(" ZSTD ".parse(), Ok(ObjectEncoding::ZstdNdjson));
        assert_eq!("brotli".parse::<ObjectEncoding>(), Err(UnknownEncoding));
    }

    fn encode_as(encoding: ObjectEncoding, lines: &[&str], level: u32) -> Vec<u8> {
        let mut w = ObjectWriter::encoding(encoding, level, &SpoolPolicy::in_memory());
        for line in lines {
            w.write_line(line.as_bytes()).unwrap();
        }
        w.finish().unwrap().body.to_vec().unwrap()
    }

    fn zstd_of(text: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(text, 1).unwrap()
    }

    #[test]
    fn a_zstd_body_is_read_back_by_zstd_and_by_read_lines() {
        // Given lines written as zstd
        let lines = [r#"{"a":1}"#, r#"{"b":[2]}"#];
        let body = encode_as(ObjectEncoding::ZstdNdjson, &lines, DEFAULT_ZSTD_LEVEL);
        // Then the zstd library decodes them, and read_lines gives them back
        assert_eq!(
            zstd::stream::decode_all(&body[..]).unwrap(),
            b"{\"a\":1}\n{\"b\":[2]}\n"
        );
        let read = read(&body, ReadLimits::default()).unwrap();
        assert_eq!(read, lines.map(|l| l.as_bytes().to_vec()));
    }

    #[test]
    fn zstd_bodies_are_the_same_bytes_for_the_same_lines_with_a_pinned_frame_header() {
        // Given the same lines written twice, at the default level and at 19, one small and one
        // past a block (128 KiB)
        let big: Vec<String> = (0..5000).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        for (lines, level, window) in [
            (&["x", "y"][..], DEFAULT_ZSTD_LEVEL, 0x58),
            (&big[..], DEFAULT_ZSTD_LEVEL, 0x58),
            (&["x", "y"][..], 19, 0x68),
        ] {
            let a = encode_as(ObjectEncoding::ZstdNdjson, lines, level);
            let b = encode_as(ObjectEncoding::ZstdNdjson, lines, level);
            // Then the bytes are equal
            assert_eq!(a, b);
            // and the header is: magic, a descriptor with only the checksum flag (no content
            // size, not single-segment, no dictionary id), then the window (2^21 at level 3,
            // 2^23 at 19), whatever the size of the body
            assert_eq!(&a[..6], &[0x28, 0xb5, 0x2f, 0xfd, 0b0000_0100, window]);
            // and the frame ends with the content's checksum (the low 32 bits of its XXH64)
            let text = zstd::stream::decode_all(&a[..]).unwrap();
            assert_eq!(text.len(), lines.iter().map(|l| l.len() + 1).sum::<usize>());
            let xxh64 = xxhash_rust::xxh64::xxh64(&text, 0) as u32;
            assert_eq!(&a[a.len() - 4..], &xxh64.to_le_bytes());
        }
        // and the digest is that of the content, whatever the encoding
        let gzip = encode(&["x", "y"], 6);
        let mut zstd =
            ObjectWriter::encoding(ObjectEncoding::ZstdNdjson, 3, &SpoolPolicy::in_memory());
        zstd.write_line(b"x").unwrap();
        zstd.write_line(b"y").unwrap();
        assert_eq!(zstd.finish().unwrap().digest, gzip.digest);
    }

    #[test]
    fn the_encoding_is_told_by_the_magic_bytes() {
        // Given the heads of a gzip, a zstd and a zstd skippable frame, and others
        let cases: [(&[u8], Option<ObjectEncoding>); 7] = [
            (&[0x1f, 0x8b, 8, 0], Some(ObjectEncoding::GzipNdjson)),
            (&[0x28, 0xb5, 0x2f, 0xfd], Some(ObjectEncoding::ZstdNdjson)),
            (&[0x50, 0x2a, 0x4d, 0x18], Some(ObjectEncoding::ZstdNdjson)),
            (&[0x5f, 0x2a, 0x4d, 0x18], Some(ObjectEncoding::ZstdNdjson)),
            (&[0x28, 0xb5, 0x2f], None),
            (&[0x1f], None),
            (b"{\"a\"", None),
        ];
        // Then each is told apart
        for (head, encoding) in cases {
            assert_eq!(ObjectEncoding::of_magic(head), encoding, "{head:02x?}");
        }
    }

    /// A reader giving one byte per read: the magic bytes come in several reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn any_zstd_stream_is_read_whatever_wrote_it_and_however_it_arrives() {
        // Given zstd streams this code does not write: two frames in a row (one with a
        // content size, one without a checksum), a skippable frame first, a gzip member
        // followed by nothing else, each arriving a byte at a time
        let mut frames = zstd_of(b"{\"a\":1}\n");
        assert_ne!(frames[4] & 0b1110_0000, 0, "the first frame says its size");
        let mut plain = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        plain.include_checksum(false).unwrap();
        plain.write_all(b"{\"b\":2}\n").unwrap();
        frames.extend(plain.finish().unwrap());
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        skippable.extend(zstd_of(b"{\"c\":3}\n"));
        for (body, expected) in [
            (frames, vec![br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()]),
            (skippable, vec![br#"{"c":3}"#.to_vec()]),
            (
                encode(&[r#"{"d":4}"#], 6).body.to_vec().unwrap(),
                vec![br#"{"d":4}"#.to_vec()],
            ),
        ] {
            // When they are read
            let lines: Result<Vec<_>, _> =
                read_lines(Trickle(&body), ReadLimits::default()).collect();
            // Then every line comes back
            assert_eq!(lines.unwrap(), expected);
        }
    }

    #[test]
    fn zstd_objects_that_are_not_what_this_code_writes_are_unreadable_by_name() {
        // Given a truncated zstd object, one with a damaged byte (its checksum no longer
        // agrees), one with bytes after its frame, one past its bound and one whose line is
        // past its bound
        let body = encode_as(ObjectEncoding::ZstdNdjson, &[r#"{"a":1}"#, r#"{"b":2}"#], 3);
        let mut damaged = body.clone();
        let at = damaged.len() - 6;
        damaged[at] ^= 0x01;
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"garbage!");
        let tight = ReadLimits {
            max_object_bytes: 10,
            max_line_bytes: 1 << 20,
        };
        let short_lines = ReadLimits {
            max_object_bytes: 1 << 20,
            max_line_bytes: 5,
        };
        let cases: [(&[u8], ReadLimits, &str); 5] = [
            (
                &body[..body.len() - 3],
                ReadLimits::default(),
                "it is truncated or corrupt",
            ),
            (
                &damaged,
                ReadLimits::default(),
                "it is truncated or corrupt",
            ),
            (
                &trailing,
                ReadLimits::default(),
                "it is truncated or corrupt",
            ),
            (&body, tight, "it expands past 10 bytes (MAX_OBJECT_BYTES)"),
            (
                &body,
                short_lines,
                "line 1 is longer than 5 bytes (MAX_LINE_BYTES)",
            ),
        ];
        // Then each is refused saying why
        for (bytes, limits, reason) in cases {
            let err = read(bytes, limits).unwrap_err();
            assert_eq!(err.to_string(), reason);
        }
    }

    #[test]
    fn a_zstd_bomb_stops_at_its_bounds_without_reading_on() {
        // Given 64 MiB of zeros as zstd (a few KiB), once without a newline and once as lines
        let zeros = vec![b'0'; 1 << 20];
        let mut line_bomb = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let mut object_bomb = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let line = format!("{{\"z\":\"{}\"}}\n", "0".repeat(1000));
        for _ in 0..64 {
            line_bomb.write_all(&zeros).unwrap();
            for _ in 0..(1 << 20) / line.len() {
                object_bomb.write_all(line.as_bytes()).unwrap();
            }
        }
        let (line_bomb, object_bomb) = (line_bomb.finish().unwrap(), object_bomb.finish().unwrap());
        assert!(line_bomb.len() < 64 << 10 && object_bomb.len() < 64 << 10);
        // When they are read with a 1 MiB line bound and a 4 MiB object bound
        let limits = ReadLimits {
            max_object_bytes: 4 << 20,
            max_line_bytes: 1 << 20,
        };
        // Then the line fails at its bound, and the object at its own
        let mut lines = read_lines(&line_bomb[..], limits);
        assert!(matches!(
            lines.next(),
            Some(Err(Unreadable::LineTooLong { line: 1, .. }))
        ));
        assert!(lines.next().is_none());
        let read_whole: Result<Vec<_>, _> = read_lines(&object_bomb[..], limits).collect();
        assert!(
            matches!(read_whole, Err(Unreadable::TooLarge { max }) if max == 4 << 20),
            "{read_whole:?}"
        );
    }

    #[test]
    fn a_zstd_frame_asking_for_a_window_past_the_bound_is_unreadable() {
        // Given a frame whose header asks for a 2^28 window (as `zstd --long=28` writes)
        let mut wide = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        wide.window_log(ZSTD_WINDOW_LOG_MAX + 1).unwrap();
        wide.write_all(b"{\"a\":1}\n").unwrap();
        let wide = wide.finish().unwrap();
        // Then it is refused rather than allocated
        let read_wide: Result<Vec<_>, _> = read_lines(&wide[..], ReadLimits::default()).collect();
        assert!(
            matches!(read_wide, Err(Unreadable::Corrupt(_))),
            "{read_wide:?}"
        );
    }
}
