//! Any JSON object as a record: `restore(compact(r)) == r`, in memory and through the NDJSON
//! text that is actually stored; only the three compacted fields may change, and no key moves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use log_etl::record::fields::{self, Field};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(original) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let mut compacted = original.clone();
    fields::shorten(&mut compacted);

    assert!(
        compacted.keys().eq(original.keys()),
        "compaction changed the keys or their order"
    );
    for (key, value) in &original {
        if !Field::ALL.iter().any(|f| f.name() == key) {
            assert_eq!(&compacted[key], value, "field {key:?} is not compacted");
        }
    }

    let mut restored = compacted.clone();
    fields::restore(&mut restored);
    assert_eq!(restored, original, "in-memory round trip");

    let text = serde_json::to_string(&compacted).expect("a JSON map always serialises");
    assert!(!text.contains('\n'), "an NDJSON line holds no newline");
    match serde_json::from_str::<Map<String, Value>>(&text) {
        Ok(mut reread) => {
            fields::restore(&mut reread);
            assert_eq!(reread, original, "round trip through text: {text}");
        }
        // An escape adds one level, which can take a record already at serde_json's nesting
        // limit (128) over it; the pipeline's own limit (32 by default) keeps records far below.
        Err(err) => assert!(
            err.to_string().contains("recursion limit exceeded"),
            "compacted text does not parse: {err}"
        ),
    }
});
