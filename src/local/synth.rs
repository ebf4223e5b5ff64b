//! Realistic source records, as the log server makes them: the simulator, `generate` and the
//! tests all draw from here. Deterministic for a seed (the tokens' IVs aside); the clock is an
//! input, never read.

use std::io::{self, Write};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::record::fernet::KeyRing;
use crate::record::pyrepr;

/// What to mix into the usual records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    pub seed: u64,
    /// First `record_id`; ids increase by one per record.
    pub first_record_id: u64,
    /// Records per thousand with unusual but valid values (still land, must restore exactly).
    pub unusual_per_mille: u32,
    /// Records per thousand whose token cannot be decrypted (quarantined).
    pub bad_per_mille: u32,
    /// Time between two records, in milliseconds (the server: 300), give or take a fifteenth.
    pub interval_ms: u32,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            first_record_id: 1,
            unusual_per_mille: 0,
            bad_per_mille: 0,
            interval_ms: 300,
        }
    }
}

/// One element of an API response, and the record it carries when it can be decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItem {
    /// The JSON object the server sends: `recordId`, `data` (the token), `ArrivalTimeStamp`.
    pub source: String,
    /// The plaintext record, or `None` for a token made to fail.
    pub truth: Option<Map<String, Value>>,
}

/// A generator of source records.
pub struct Synth {
    rng: fastrand::Rng,
    options: SynthOptions,
    next_id: u64,
    stranger: KeyRing,
}

const ACTIVITIES: [&str; 7] = [
    "login",
    "logout",
    "view",
    "search",
    "purchase",
    "add_to_cart",
    "review",
];
const URLS: [&str; 6] = [
    "/api/products/product/",
    "/api/users/login/",
    "/api/users/logout/",
    "/api/orders/order/",
    "/api/search/",
    "/api/cart/",
];

impl Synth {
    pub fn new(options: SynthOptions) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(options.seed),
            options,
            next_id: options.first_record_id,
            stranger: KeyRing::parse(&crate::record::fernet::generate_key()).expect("fresh key"),
        }
    }

    /// `count` records starting at `start`, about 0.3 s apart, encrypted with `ring`.
    pub fn batch(&mut self, ring: &KeyRing, start: DateTime<Utc>, count: usize) -> Vec<SourceItem> {
        let mut at = start;
        (0..count)
            .map(|_| {
                let item = self.item(ring, at);
                at += self.next_gap();
                item
            })
            .collect()
    }

    /// As [`Synth::batch`], written to `out` item by item instead of kept.
    pub fn write_batch<W: Write>(
        &mut self,
        ring: &KeyRing,
        start: DateTime<Utc>,
        count: u64,
        out: &mut ResponseWriter<W>,
    ) -> io::Result<()> {
        let mut at = start;
        for _ in 0..count {
            let item = self.item(ring, at);
            at += self.next_gap();
            out.item(&item)?;
        }
        Ok(())
    }

    /// Time between two records: the interval, give or take a fifteenth (0.3 s ± 20 ms).
    pub fn next_gap(&mut self) -> Duration {
        let interval = i64::from(self.options.interval_ms);
        let jitter = interval / 15;
        Duration::milliseconds(self.rng.i64(interval - jitter..=interval + jitter))
    }

    /// One source record at time `at`.
    pub fn item(&mut self, ring: &KeyRing, at: DateTime<Utc>) -> SourceItem {
        let mut record = self.usual_record(at);
        let roll = self.rng.u32(0..1000);
        if roll < self.options.bad_per_mille {
            return self.bad_item(ring, &record, at);
        }
        if roll < self.options.bad_per_mille + self.options.unusual_per_mille {
            self.make_unusual(&mut record, at);
        }
        let token = ring.encrypt(pyrepr::to_repr(&Value::Object(record.clone())).as_bytes());
        SourceItem {
            source: envelope(record_id(&record), &token, at),
            truth: Some(record),
        }
    }

    /// The server's usual record.
    pub fn usual_record(&mut self, at: DateTime<Utc>) -> Map<String, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let user = self.rng.u32(1..=500);
        let method = match self.rng.u32(0..100) {
            0..60 => "GET",
            60..95 => "POST",
            95..97 => "PUT",
            97..99 => "DELETE",
            _ => "PATCH",
        };
        let activity = ACTIVITIES[self.rng.usize(..ACTIVITIES.len())];
        let level = match self.rng.u32(0..100) {
            0..90 => "INFO",
            90..98 => "WARNING",
            _ => "ERROR",
        };
        let value = json!({
            "user_id": hex_sha256(user.to_string().as_bytes()),
            "record_id": id,
            "activity": activity,
            "url": URLS[self.rng.usize(..URLS.len())],
            "method": method,
            "name": "json_logger",
            "inDate": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "detail": {"message": format!("{method} {activity}"), "levelname": level},
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!("built as an object"),
        }
    }

    /// Valid values the usual path does not expect; each must land and restore exactly.
    fn make_unusual(&mut self, record: &mut Map<String, Value>, at: DateTime<Utc>) {
        let set = |r: &mut Map<String, Value>, k: &str, v: Value| {
            r.insert(k.to_owned(), v);
        };
        match self.rng.u32(0..12) {
            0 => set(record, "user_id", Value::Null),
            1 => {
                let upper = record["user_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_uppercase();
                set(record, "user_id", json!(upper));
            }
            2 => {
                let short = &record["user_id"].as_str().unwrap_or_default()[..63];
                set(record, "user_id", json!(short));
            }
            // Already looks compact: must be escaped, not expanded, on the way back.
            3 => set(
                record,
                "user_id",
                json!("a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw"),
            ),
            4 => set(record, "method", json!("PROPFIND")),
            5 => set(record, "method", json!(2)),
            6 => {
                let local = at
                    .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).expect("valid offset"));
                set(
                    record,
                    "inDate",
                    json!(local.to_rfc3339_opts(SecondsFormat::Millis, false)),
                );
            }
            7 => set(
                record,
                "inDate",
                json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ),
            8 => set(
                record,
                "detail",
                json!({"message": "it's a \"quoted\" back\\slash\nnew line\ttab é 😀 \u{7}", "levelname": "INFO"}),
            ),
            9 => {
                set(
                    record,
                    "big",
                    serde_json::from_str("123456789012345678901234567890").expect("number"),
                );
                set(
                    record,
                    "ratio",
                    serde_json::from_str("1e-05").expect("number"),
                );
                set(record, "flags", json!([true, false, null, [], {}]));
            }
            10 => set(record, "method", json!({"~": "GET"})),
            _ => set(record, "activity", json!("")),
        }
    }

    fn bad_item(
        &mut self,
        ring: &KeyRing,
        record: &Map<String, Value>,
        at: DateTime<Utc>,
    ) -> SourceItem {
        let plain = pyrepr::to_repr(&Value::Object(record.clone()));
        let token = match self.rng.u32(0..4) {
            0 => self.stranger.encrypt(plain.as_bytes()),
            1 => {
                // Flip one character in the ciphertext part.
                let mut bytes = ring.encrypt(plain.as_bytes()).into_bytes();
                let i = 40 + self.rng.usize(..bytes.len() - 80);
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).expect("ASCII")
            }
            2 => {
                let token = ring.encrypt(plain.as_bytes());
                token[..token.len() / 2].to_owned()
            }
            _ => "not a fernet token!".to_owned(),
        };
        SourceItem {
            source: envelope(record_id(record), &token, at),
            truth: None,
        }
    }
}

fn record_id(record: &Map<String, Value>) -> String {
    record
        .get("record_id")
        .map(Value::to_string)
        .unwrap_or_default()
}

fn envelope(record_id: String, token: &str, at: DateTime<Utc>) -> String {
    json!({
        "recordId": record_id,
        "data": token,
        "ArrivalTimeStamp": at.timestamp_millis() as f64 / 1000.0,
    })
    .to_string()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Joins source items into a response body (a JSON array, one element a line).
pub fn response_body(items: &[SourceItem]) -> String {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.source.len() + 2).sum::<usize>() + 3);
    let mut writer = ResponseWriter::new(&mut body);
    for item in items {
        writer.item(item).expect("writing to memory cannot fail");
    }
    writer.finish().expect("writing to memory cannot fail");
    String::from_utf8(body).expect("source items are JSON text")
}

/// Writes a response (a JSON array, one element a line) item by item, so a response of any size
/// is written in constant memory; with a truth writer, each decryptable record goes there too,
/// as NDJSON.
pub struct ResponseWriter<W: Write> {
    body: W,
    truth: Option<Box<dyn Write>>,
    items: u64,
}

impl<W: Write> ResponseWriter<W> {
    pub fn new(body: W) -> Self {
        Self {
            body,
            truth: None,
            items: 0,
        }
    }

    /// Also writes each record with a plaintext to `truth`.
    pub fn with_truth(mut self, truth: Box<dyn Write>) -> Self {
        self.truth = Some(truth);
        self
    }

    pub fn item(&mut self, item: &SourceItem) -> io::Result<()> {
        self.body
            .write_all(if self.items == 0 { b"[" } else { b",\n" })?;
        self.body.write_all(item.source.as_bytes())?;
        self.items += 1;
        if let (Some(truth), Some(record)) = (self.truth.as_mut(), &item.truth) {
            serde_json::to_writer(&mut *truth, record)?;
            truth.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Closes the array and flushes both writers.
    pub fn finish(mut self) -> io::Result<()> {
        self.body
            .write_all(if self.items == 0 { b"[]\n" } else { b"]\n" })?;
        self.body.flush()?;
        match self.truth.as_mut() {
            Some(truth) => truth.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fernet::generate_key;
    use chrono::TimeZone;

    #[test]
    fn usual_records_look_like_the_servers() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, 2).unwrap();
        let items = Synth::new(SynthOptions::default()).batch(&ring, start, 100);
        assert_eq!(items.len(), 100);
        let first = items[0].truth.as_ref().unwrap();
        assert_eq!(first["record_id"], json!(1));
        assert_eq!(first["inDate"], json!("2023-03-18T15:08:02.000Z"));
        assert_eq!(first["user_id"].as_str().unwrap().len(), 64);
        // about 0.3 s apart: 99 gaps of 280–320 ms
        let last = items[99].truth.as_ref().unwrap()["inDate"]
            .as_str()
            .unwrap()
            .to_owned();
        let span = DateTime::parse_from_rfc3339(&last)
            .unwrap()
            .timestamp_millis()
            - start.timestamp_millis();
        assert!((99 * 280..=99 * 320).contains(&span), "{span}");
        // and every token decrypts to the repr of its record
        for item in &items {
            let source: Value = serde_json::from_str(&item.source).unwrap();
            let plain = ring.decrypt(source["data"].as_str().unwrap()).unwrap();
            let parsed =
                pyrepr::parse(std::str::from_utf8(&plain).unwrap(), Default::default()).unwrap();
            assert_eq!(Some(parsed.as_object().unwrap()), item.truth.as_ref());
        }
    }

    #[test]
    fn same_seed_same_records() {
        let ring = KeyRing::parse(&generate_key()).unwrap();
        let start = Utc.with_ymd_and_hms(2023, 3, 18, 15, 8, 2).unwrap();
        let options = SynthOptions {
            unusual_per_mille: 300,
            bad_per_mille: 100,
            ..SynthOptions::default()
        };
        let a: Vec<_> = Synth::new(options)
            .batch(&ring, start, 200)
            .into_iter()
            .map(|i| i.truth)
            .collect();
        let b: Vec<_> = Synth::new(options)
            .batch(&ring, start, 200)
            .into_iter()
            .map(|i| i.truth)
            .collect();
        assert_eq!(a, b);
        let bad = a.iter().filter(|t| t.is_none()).count();
        assert!((5..=40).contains(&bad), "{bad}");
    }
}
