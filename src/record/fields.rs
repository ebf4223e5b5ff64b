//! The field rules: `user_id`, `method` and `inDate` shortened losslessly, and the exact inverse.
//!
//! Each field has a *canonical* form (the usual value) that compacts to a shorter *compact*
//! form. Any other value is kept as it is, unless it could be mistaken for a compact form (or
//! for an escape), in which case it is wrapped as `{"~": value}`. Restoring unwraps escapes,
//! expands compact forms and leaves everything else alone, so `restore(compact(r)) == r` for
//! every record, and the usual record carries no extra bytes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Key of the one-entry object that marks a value kept verbatim.
pub const ESCAPE_KEY: &str = "~";

/// HTTP methods and their compact codes. `GET`/`POST` are the original script's 1/2; the rest
/// extend it. Codes are never reused: adding a method means appending to this table.
pub const METHOD_CODES: [(&str, u64); 9] = [
    ("GET", 1),
    ("POST", 2),
    ("PUT", 3),
    ("PATCH", 4),
    ("DELETE", 5),
    ("HEAD", 6),
    ("OPTIONS", 7),
    ("CONNECT", 8),
    ("TRACE", 9),
];

/// The three compacted fields, by their source names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `user_id`: 64 lowercase hex chars ⇄ two 22-char URL-safe base64 halves.
    UserId,
    /// `method`: a name in [`METHOD_CODES`] ⇄ its code, as a JSON number.
    Method,
    /// `inDate`: `20YY-MM-DDThh:mm:ss.mmmZ` ⇄ `YYMMDDhhmmssmmm`.
    InDate,
}

impl Field {
    pub const ALL: [Field; 3] = [Field::UserId, Field::Method, Field::InDate];

    /// The field's name in the record.
    pub const fn name(self) -> &'static str {
        match self {
            Field::UserId => "user_id",
            Field::Method => "method",
            Field::InDate => "inDate",
        }
    }

    /// The compact form of a canonical value; `None` if the value is not canonical.
    fn short_form(self, value: &Value) -> Option<Value> {
        let Value::String(text) = value else {
            return None;
        };
        match self {
            Field::UserId => shorten_user_id(text).map(Value::String),
            Field::Method => METHOD_CODES
                .iter()
                .find(|(name, _)| *name == text)
                .map(|&(_, code)| Value::from(code)),
            Field::InDate => shorten_in_date(text).map(Value::String),
        }
    }

    /// The canonical value a compact form stands for; `None` if the value is not a compact form.
    fn expand(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (Field::UserId, Value::String(text)) => expand_user_id(text).map(Value::String),
            (Field::Method, Value::Number(n)) => {
                let code = n.as_u64()?;
                // With exact number text, only the digits themselves are a code: `1.0` is not.
                if n.to_string() != code.to_string() {
                    return None;
                }
                METHOD_CODES
                    .iter()
                    .find(|&&(_, c)| c == code)
                    .map(|&(name, _)| Value::from(name))
            }
            (Field::InDate, Value::String(text)) => expand_in_date(text).map(Value::String),
            _ => None,
        }
    }

    /// Shortens one value of this field (to its compact form, or escaped, or as it is).
    pub fn shorten(self, value: Value) -> Value {
        if let Some(short) = self.short_form(&value) {
            short
        } else if is_escape(&value) || self.expand(&value).is_some() {
            escape(value)
        } else {
            value
        }
    }

    /// Restores one compacted value of this field.
    pub fn restore(self, value: Value) -> Value {
        if is_escape(&value) {
            let Value::Object(mut map) = value else {
                unreachable!("is_escape checked the shape")
            };
            return map.swap_remove(ESCAPE_KEY).unwrap_or(Value::Null);
        }
        self.expand(&value).unwrap_or(value)
    }
}

/// How the transcoder writes one string value of a field: the same decision as
/// [`Field::shorten`] on `Value::String(text)`, without building a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrForm {
    /// The compact form was written to the output (as JSON: a string, or a method's number).
    Compact,
    /// Not canonical, but a compact form look-alike: written as `{"~": text}`.
    Escaped,
    /// Written as it is.
    AsIs,
}

impl Field {
    /// Writes a string value of this field as JSON into `out` when it is canonical (its
    /// compact form); otherwise writes nothing and says how it must be written. `text` must be
    /// ASCII that JSON writes without escapes.
    pub(crate) fn write_short_str(self, text: &[u8], out: &mut Vec<u8>) -> StrForm {
        match self {
            Field::UserId => {
                if write_short_user_id(text, out) {
                    StrForm::Compact
                } else if std::str::from_utf8(text).is_ok_and(|t| expand_user_id(t).is_some()) {
                    StrForm::Escaped
                } else {
                    StrForm::AsIs
                }
            }
            Field::Method => match METHOD_CODES
                .iter()
                .find(|(name, _)| name.as_bytes() == text)
            {
                Some(&(_, code)) => {
                    push_decimal(code, out);
                    StrForm::Compact
                }
                None => StrForm::AsIs,
            },
            Field::InDate => {
                if fits_in_date_shape(text) {
                    out.push(b'"');
                    out.extend(IN_DATE_DIGITS.iter().map(|&i| text[i]));
                    out.push(b'"');
                    StrForm::Compact
                } else if text.len() == IN_DATE_DIGITS.len() && text.iter().all(u8::is_ascii_digit)
                {
                    StrForm::Escaped
                } else {
                    StrForm::AsIs
                }
            }
        }
    }

    /// Whether an integer value of this field, written `digits` (canonical decimal, maybe
    /// negative), is a compact form and so must be escaped: [`Field::shorten`]'s decision.
    pub(crate) fn is_compact_integer(self, digits: &[u8]) -> bool {
        // Canonical digits (no sign, no leading zero) name the same number only as that text.
        let canonical = !digits.is_empty()
            && digits.len() <= 19
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1);
        let value = || {
            digits
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
        };
        self == Field::Method && canonical && METHOD_CODES.iter().any(|&(_, c)| c == value())
    }
}

fn push_decimal(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// [`shorten_user_id`] writing its JSON string into `out`; false (nothing written) if `text`
/// is not 64 lowercase hex digits.
fn write_short_user_id(text: &[u8], out: &mut Vec<u8>) -> bool {
    if text.len() != 64 {
        return false;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return false,
        }
    }
    let mut encoded = [0u8; 44];
    for (half, dest) in bytes.chunks_exact(16).zip(encoded.chunks_exact_mut(22)) {
        let written = URL_SAFE_NO_PAD
            .encode_slice(half, dest)
            .expect("16 bytes are 22 base64 characters");
        debug_assert_eq!(written, 22);
    }
    out.push(b'"');
    out.extend_from_slice(&encoded);
    out.push(b'"');
    true
}

/// Shortens the three fields of a record in place; all other fields and the key order are kept.
pub fn shorten(record: &mut Map<String, Value>) {
    for field in Field::ALL {
        if let Some(slot) = record.get_mut(field.name()) {
            *slot = field.shorten(slot.take());
        }
    }
}

/// Exact inverse of [`shorten`].
pub fn restore(record: &mut Map<String, Value>) {
    for field in Field::ALL {
        if let Some(slot) = record.get_mut(field.name()) {
            *slot = field.restore(slot.take());
        }
    }
}

fn is_escape(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.len() == 1 && map.contains_key(ESCAPE_KEY))
}

fn escape(value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(ESCAPE_KEY.to_owned(), value);
    Value::Object(map)
}

/// `b64uuid`'s rule, half by half: `B64UUID(hex[:32]).string + B64UUID(hex[32:]).string`.
fn shorten_user_id(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = String::with_capacity(44);
    for half in [&text[..32], &text[32..]] {
        let uuid = Uuid::try_parse(half).ok()?;
        URL_SAFE_NO_PAD.encode_string(uuid.as_bytes(), &mut out);
    }
    Some(out)
}

fn expand_user_id(text: &str) -> Option<String> {
    // A compact form is base64, so ASCII; checking that first also keeps the cut at byte 22 on
    // a character boundary.
    if text.len() != 44 || !text.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(64);
    for half in [&text[..22], &text[22..]] {
        // The decoder refuses padding and non-zero trailing bits, so each 16-byte value has
        // exactly one 22-char form and the expansion is unambiguous.
        let mut bytes = [0u8; 16];
        let n = URL_SAFE_NO_PAD.decode_slice(half, &mut bytes).ok()?;
        if n != 16 {
            return None;
        }
        out.push_str(
            Uuid::from_bytes(bytes)
                .simple()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
    }
    Some(out)
}

/// Positions of the digits in `20YY-MM-DDThh:mm:ss.mmmZ`, after the century.
const IN_DATE_DIGITS: [usize; 15] = [2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
/// `20YY-MM-DDThh:mm:ss.mmmZ` with `#` for a digit.
const IN_DATE_SHAPE: &[u8; 24] = b"20##-##-##T##:##:##.###Z";

fn shorten_in_date(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    fits_in_date_shape(bytes).then(|| IN_DATE_DIGITS.iter().map(|&i| bytes[i] as char).collect())
}

fn fits_in_date_shape(bytes: &[u8]) -> bool {
    bytes.len() == IN_DATE_SHAPE.len()
        && bytes.iter().zip(IN_DATE_SHAPE).all(|(b, s)| match s {
            b'#' => b.is_ascii_digit(),
            _ => b == s,
        })
}

fn expand_in_date(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() != IN_DATE_DIGITS.len() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = *IN_DATE_SHAPE;
    for (&i, &d) in IN_DATE_DIGITS.iter().zip(bytes) {
        out[i] = d;
    }
    String::from_utf8(out.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn usual_record_matches_the_original_script() {
        // Given the server's example record
        let mut r = record(json!({
            "user_id": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
            "record_id": 98830, "activity": "purchase", "url": "/api/products/product/",
            "method": "POST", "name": "json_logger", "inDate": "2023-03-18T15:08:02.284Z",
            "detail": {"message": "POST purchase", "levelname": "INFO"}
        }));
        let original = r.clone();
        // When it is compacted
        shorten(&mut r);
        // Then the three fields are what the Python script wrote (b64uuid halves, 2, digits)
        assert_eq!(
            r["user_id"],
            json!("a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw")
        );
        assert_eq!(r["method"], json!(2));
        assert_eq!(r["inDate"], json!("230318150802284"));
        // and the key order and the other fields are untouched
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"user_id":"a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw","record_id":98830,"activity":"purchase","url":"/api/products/product/","method":2,"name":"json_logger","inDate":"230318150802284","detail":{"message":"POST purchase","levelname":"INFO"}}"#
        );
        restore(&mut r);
        assert_eq!(r, original);
    }

    #[test]
    fn every_method_has_a_distinct_code() {
        for (i, (name, code)) in METHOD_CODES.iter().enumerate() {
            assert_eq!(Field::Method.shorten(json!(name)), json!(code));
            assert_eq!(Field::Method.restore(json!(code)), json!(name));
            assert!(
                METHOD_CODES[..i]
                    .iter()
                    .all(|(n, c)| n != name && c != code)
            );
        }
    }

    #[test]
    fn look_alikes_are_escaped_and_come_back() {
        let cases = [
            (
                Field::UserId,
                json!("a4ayc_80_OGda4BO_1o_VwR62k6qIvHUnAHlLdt4dbSw"),
            ),
            (Field::Method, json!(1)),
            (Field::InDate, json!("230318150802284")),
            (Field::InDate, json!({"~": "x"})),
        ];
        for (field, value) in cases {
            let c = field.shorten(value.clone());
            assert_eq!(c, json!({ "~": value }), "{field:?}");
            assert_eq!(field.restore(c), value);
        }
    }

    #[test]
    fn other_values_pass_through_unchanged() {
        let cases = [
            (Field::UserId, json!(null)),
            (
                Field::UserId,
                json!("6B86B273FF34FCE19D6B804EFF5A3F5747ADA4EAA22F1D49C01E52DDB7875B4B"),
            ),
            (Field::UserId, json!("abc")),
            (Field::Method, json!("get")),
            (Field::Method, json!("PROPFIND")),
            (Field::Method, json!(10)),
            (Field::Method, json!(1.5)),
            (Field::InDate, json!("2023-03-18T15:08:02Z")),
            (Field::InDate, json!("1999-03-18T15:08:02.284Z")),
            (Field::InDate, json!(1679152082)),
        ];
        for (field, value) in cases {
            assert_eq!(field.shorten(value.clone()), value, "{field:?}");
            assert_eq!(field.restore(value.clone()), value, "{field:?}");
        }
    }

    #[test]
    fn a_44_byte_user_id_with_multibyte_characters_passes_through() {
        // 'é' spans bytes 21 and 22, where the two halves would be cut
        let odd = "aaaaaaaaaaaaaaaaaaaaaéaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(odd.len(), 44);
        assert_eq!(Field::UserId.shorten(json!(odd)), json!(odd));
        assert_eq!(Field::UserId.restore(json!(odd)), json!(odd));
    }

    #[test]
    fn float_that_equals_a_code_is_not_a_code() {
        let one_point_oh: Value = serde_json::from_str("1.0").unwrap();
        assert_eq!(Field::Method.shorten(one_point_oh.clone()), one_point_oh);
        assert_eq!(Field::Method.restore(one_point_oh.clone()), one_point_oh);
    }

    #[test]
    fn user_id_with_non_canonical_base64_tail_is_not_compact() {
        // 'x' as the 22nd char leaves non-zero trailing bits: no 16-byte value encodes so.
        let odd = "a4ayc_80_OGda4BO_1o_VxR62k6qIvHUnAHlLdt4dbSw";
        assert_eq!(Field::UserId.shorten(json!(odd)), json!(odd));
    }
}
