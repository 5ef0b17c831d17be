//! `Idempotency-Key` on `POST /api/v1/users`: a retry with the same key and body answers
//! what the first request answered, without a second user; the same key with another body
//! is `422`. Keys are per caller and expire after 24 hours.
//!
//! The body is compared by a keyed BLAKE2b hash of its canonical JSON (keys sorted, no
//! whitespace): it holds a password, which must not be stored in any form that can be
//! checked offline. The hash key is derived from the JWT secret.

use axum::http::HeaderMap;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const TTL_SECS: i64 = 24 * 60 * 60;
/// A key whose first request neither finished nor failed within this time (its process
/// died) may be taken over by a retry. Longer than any request may take.
pub const ABANDON_SECS: i64 = 120;

/// The key of a request, if it has one: 1 to 255 visible ASCII characters.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "Must be 1 to 255 visible ASCII characters.",
            )
        })
}

/// The keyed hash a body is recognised by.
pub fn fingerprint(secret: &[u8], body: &Map<String, Value>) -> Vec<u8> {
    let mut canonical = String::new();
    write_canonical(&Value::Object(body.clone()), &mut canonical);
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(b"users-service idempotency v1\0");
    hasher.update((secret.len() as u64).to_le_bytes());
    hasher.update(secret);
    hasher.update(canonical.as_bytes());
    hasher.finalize().to_vec()
}

/// JSON with object keys sorted at every level, whatever order the parser kept.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter_but_values_do() {
        let a = object(json!({"email": "a@b.c", "n": {"x": 1, "y": [1, 2]}}));
        let b = object(
            serde_json::from_str(r#"{ "n": {"y": [1,2], "x": 1}, "email": "a@b.c" }"#).unwrap(),
        );
        let c = object(json!({"email": "a@b.c", "n": {"x": 2, "y": [1, 2]}}));
        assert_eq!(fingerprint(b"k", &a), fingerprint(b"k", &b));
        assert_ne!(fingerprint(b"k", &a), fingerprint(b"k", &c));
        assert_ne!(fingerprint(b"k", &a), fingerprint(b"other", &a));
    }

    #[test]
    fn keys_must_be_short_visible_ascii() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, value.parse().unwrap());
            key(&headers)
        };
        assert_eq!(with("abc-123").unwrap(), Some("abc-123".to_owned()));
        assert!(with("").is_err());
        assert!(with("has space").is_err());
        assert!(with(&"a".repeat(256)).is_err());
        assert_eq!(key(&HeaderMap::new()).unwrap(), None);
    }
}
