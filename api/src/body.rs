//! Request bodies: a JSON-object extractor with the contract's 415/413/400 answers, and a
//! field reader that reports type errors per field the way DRF does, all at once.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// Bodies over this size are refused with `413`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON object body. An empty body reads as `{}` (as DRF does).
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !is_json(&content_type) {
            return Err(ApiError::UnsupportedMediaType(content_type));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = axum::body::to_bytes(Body::new(request.into_body()), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(Self(object)),
            Ok(other) => Err(ApiError::field(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    python_type(&other)
                ),
            )),
            Err(error) => Err(ApiError::MalformedJson(error.to_string())),
        }
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The Python type name DRF puts in its messages.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";

/// Reads typed fields out of a JSON object, collecting every error.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    pub errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Map<String, Value>) -> Self {
        Self {
            object,
            errors: FieldErrors::new(),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    pub fn contains(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// Ends the reading: every error found, or nothing.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }

    pub fn required_string(&mut self, field: &str) -> Option<String> {
        if !self.object.contains_key(field) {
            self.error(field, REQUIRED);
            return None;
        }
        self.string(field)
    }

    /// A string field if present. Numbers are taken as their text, as DRF's CharField does.
    pub fn string(&mut self, field: &str) -> Option<String> {
        match self.object.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => {
                self.error(field, NOT_NULL);
                None
            }
            _ => {
                self.error(field, "Not a valid string.");
                None
            }
        }
    }

    /// A nullable integer field: `None` when absent, `Some(None)` for `null`.
    pub fn nullable_integer(&mut self, field: &str) -> Option<Option<i64>> {
        let value = self.object.get(field)?;
        if value.is_null() {
            return Some(None);
        }
        match as_integer(value) {
            Some(n) => Some(Some(n)),
            None => {
                self.error(field, "A valid integer is required.");
                None
            }
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = self.object.get(field)?;
        match as_boolean(value) {
            Some(b) => Some(b),
            None if value.is_null() => {
                self.error(field, NOT_NULL);
                None
            }
            None => {
                self.error(field, "Must be a valid boolean.");
                None
            }
        }
    }

    pub fn string_list(&mut self, field: &str) -> Option<Vec<String>> {
        match self.object.get(field)? {
            Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                if strings.is_none() {
                    self.error(field, "Not a valid string.");
                }
                strings
            }
            Value::Null => {
                self.error(field, NOT_NULL);
                None
            }
            other => {
                let message = format!(
                    "Expected a list of items but got type \"{}\".",
                    python_type(other)
                );
                self.error(field, message);
                None
            }
        }
    }
}

/// DRF's IntegerField: integers, integral floats, and strings holding either.
fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                let (whole, zeros) = s.split_once('.')?;
                zeros
                    .chars()
                    .all(|c| c == '0')
                    .then(|| whole.parse().ok())?
            })
        }
        _ => None,
    }
}

/// DRF's BooleanField: booleans, 0/1, and its list of true/false words.
fn as_boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on"
            | "On" | "ON" | "1" => Some(true),
            "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off"
            | "Off" | "OFF" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_follow_drf() {
        assert_eq!(as_integer(&json!(7)), Some(7));
        assert_eq!(as_integer(&json!(7.0)), Some(7));
        assert_eq!(as_integer(&json!("7")), Some(7));
        assert_eq!(as_integer(&json!("7.00")), Some(7));
        assert_eq!(as_integer(&json!(1.5)), None);
        assert_eq!(as_integer(&json!("abc")), None);
        assert_eq!(as_integer(&json!(true)), None);
    }

    #[test]
    fn booleans_follow_drf() {
        assert_eq!(as_boolean(&json!(true)), Some(true));
        assert_eq!(as_boolean(&json!("off")), Some(false));
        assert_eq!(as_boolean(&json!(1)), Some(true));
        assert_eq!(as_boolean(&json!(2)), None);
        assert_eq!(as_boolean(&json!("maybe")), None);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
