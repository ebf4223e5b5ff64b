//! Any bytes as a landed object: `restore_object` never panics.
//!
//! The first byte picks the mode. Even: the rest is taken as the gzip'd object itself (bad
//! headers, truncated streams, several members, decompression bombs). Odd: the rest is taken as
//! NDJSON text and gzip'd by the project's own writer first (at the level in the byte's upper
//! bits), so the fuzzer spends its time on the lines rather than on the gzip framing; then
//! restoring must succeed exactly when every non-empty line is a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_etl::batch::encode::ObjectWriter;
use log_etl::batch::encode::ReadLimits;
use log_etl::restore::restore_object;
use log_etl::batch::spool::SpoolPolicy;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = restore_object("fuzz", rest, ReadLimits::default(), &mut Vec::new());
        return;
    }

    let level = u32::from(mode >> 1) % 10;
    let mut writer = ObjectWriter::new(level, &SpoolPolicy::in_memory());
    let mut lines = 0u64;
    let mut all_objects = true;
    for line in rest.split(|&b| b == b'\n') {
        writer
            .write_line(line)
            .expect("in-memory writes cannot fail");
        if !line.is_empty() {
            lines += 1;
            all_objects &= serde_json::from_slice::<Map<String, Value>>(line).is_ok();
        }
    }
    let encoded = writer.finish().expect("in-memory writes cannot fail");
    let body = encoded.body.to_vec().expect("in-memory body");

    let mut out = Vec::new();
    match restore_object("fuzz", &body[..], ReadLimits::default(), &mut out) {
        Ok(count) => {
            assert!(all_objects, "a line that is not a JSON object was restored");
            assert_eq!(count, lines, "restored record count");
            // One output line per record, each an object again.
            let mut restored = 0u64;
            for line in out.split_inclusive(|&b| b == b'\n') {
                let line = line
                    .strip_suffix(b"\n")
                    .expect("every record ends its line");
                serde_json::from_slice::<Map<String, Value>>(line)
                    .expect("a restored record is a JSON object");
                restored += 1;
            }
            assert_eq!(restored, count, "restored output lines");
        }
        Err(err) => assert!(!all_objects, "every line is an object, yet: {err}"),
    }
});
