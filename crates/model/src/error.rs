//! Errors in the API's JSON shape (docs/compatibility.md §2):
//! `{"error", "type", "message", "instance", "details"}`.
//!
//! The model builds the error without `instance`; the HTTP layer adds a fresh UUID per call.
//! The model says what kind of failure it is ([`ErrorKind`]); which HTTP status answers each
//! kind is the server's business.
//! `details` values are always strings and numbers in messages carry one decimal, as the
//! original API did.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Base of every `type`: the error's entry in the server's own API reference (a URI
/// reference, resolved against the request's URL). The original pointed at its developer
/// site, which no longer exists.
pub const TYPE_BASE: &str = "/reference#error-";

/// What kind of failure an error is; the server answers each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or a rule refused it.
    Invalid,
    /// No valid credential.
    Unauthorized,
    /// Nothing at that location (or nothing the caller may see).
    NotFound,
    MethodNotAllowed,
    /// `If-Match` named another revision.
    PreconditionFailed,
    PayloadTooLarge,
    /// A rate or stream limit.
    Blocked,
    Internal,
    /// Storage failed or the service is closing: retry later.
    Unavailable,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub error: String,
    pub anchor: &'static str,
    pub message: String,
    pub details: BTreeMap<String, String>,
}

impl ApiError {
    /// An error whose short `error` and long `message` are the same text (as for every rule
    /// error the original API sent).
    pub fn new(kind: ErrorKind, anchor: &'static str, text: impl Into<String>) -> ApiError {
        let text = text.into();
        ApiError { kind, error: text.clone(), anchor, message: text, details: BTreeMap::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body, with the per-call `instance` id.
    pub fn to_json(&self, instance: &str) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.error));
        body.insert("type".into(), json!(format!("{TYPE_BASE}{}", self.anchor)));
        body.insert("message".into(), json!(self.message));
        body.insert("instance".into(), json!(instance));
        if !self.details.is_empty() {
            body.insert("details".into(), json!(self.details));
        }
        Value::Object(body)
    }

    // ---- the catalogue (§2.2), and the errors Roost adds ----

    pub fn invalid_content() -> ApiError {
        ApiError::new(ErrorKind::Invalid, "invalid-content-sent", "Invalid content sent")
    }

    /// Invalid content with a reason in `message` (the short `error` stays the original text).
    pub fn invalid_content_because(reason: impl Into<String>) -> ApiError {
        let mut e = ApiError::invalid_content();
        e.message = format!("Invalid content sent: {}", reason.into());
        e
    }

    pub fn no_write_permission(fields: &[String]) -> ApiError {
        let list = fields.join(",");
        ApiError::new(
            ErrorKind::Invalid,
            "no-write-permission",
            format!("No write permission(s) for field(s): {list}"),
        )
        .with("fields", list)
    }

    /// Fields the schema has no row for (a misspelling, most often): not a permission
    /// problem, so an error of its own, with the closest known field when one is close.
    pub fn unknown_fields(element: &str, fields: &[String], closest: Option<&str>) -> ApiError {
        let list = fields.join(",");
        let mut e = ApiError::new(
            ErrorKind::Invalid,
            "unknown-field",
            format!("Unknown field(s) of {element}: {list}"),
        );
        if let Some(c) = closest {
            e.message = format!("{} (did you mean {c}?)", e.error);
            e = e.with("did_you_mean", c);
        }
        e.with("fields", list)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(ErrorKind::Unauthorized, "auth-error", "unauthorized")
    }

    pub fn not_found(path: &str) -> ApiError {
        let mut e = ApiError::new(ErrorKind::NotFound, "not-found", "not found");
        e.message = format!("No data at location '{path}'");
        e.with("path", path)
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        let mut e = ApiError::new(ErrorKind::MethodNotAllowed, "method-not-allowed", "method not allowed");
        e.message = format!("{method} is not supported on the data API; use GET, PUT or PATCH");
        e.with("method", method)
    }

    pub fn blocked() -> ApiError {
        ApiError::new(ErrorKind::Blocked, "blocked", "blocked")
    }

    pub fn internal() -> ApiError {
        ApiError::new(ErrorKind::Internal, "internal-error", "Internal Error")
    }

    pub fn service_unavailable() -> ApiError {
        ApiError::new(ErrorKind::Unavailable, "service-unavailable", "service unavailable")
    }

    pub fn precondition_failed(current: u64) -> ApiError {
        let mut e =
            ApiError::new(ErrorKind::PreconditionFailed, "precondition-failed", "precondition failed");
        e.message =
            format!("The data changed since the revision in If-Match; the current revision is {current}");
        e.with("revision", current.to_string())
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        let mut e = ApiError::new(ErrorKind::PayloadTooLarge, "payload-too-large", "payload too large");
        e.message = format!("The request body is larger than {limit} bytes");
        e.with("limit", limit.to_string())
    }

    pub fn bad_location(reason: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ErrorKind::Invalid, "invalid-location", "Invalid data location");
        e.message = format!("Invalid data location: {}", reason.into());
        e
    }

    /// A request header Roost reads (`Idempotency-Key`, `Roost-Measured-At`) is malformed.
    pub fn invalid_header(name: &str, expected: &str) -> ApiError {
        ApiError::new(
            ErrorKind::Invalid,
            "invalid-header",
            format!("Invalid {name} header: expected {expected}"),
        )
        .with("header", name)
    }

    pub fn invalid_value(field: &str, expected: &str) -> ApiError {
        ApiError::new(
            ErrorKind::Invalid,
            "invalid-value",
            format!("Invalid value for {field}: expected {expected}"),
        )
        .with("field_name", field)
    }

    pub fn temperature_format(field: &str) -> ApiError {
        ApiError::new(ErrorKind::Invalid, "format-error", format!("Temperature '{field}' is in wrong format"))
            .with("field_name", field)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Formats a number with one decimal, as the original messages do (`74.0`, `20.5`).
pub fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_has_every_member_and_string_details() {
        let e = ApiError::no_write_permission(&["target_temperature_f".into()]);
        let j = e.to_json("3c0f6a4e-0000-4000-8000-000000000000");
        assert_eq!(
            j,
            json!({
                "error": "No write permission(s) for field(s): target_temperature_f",
                "type": "/reference#error-no-write-permission",
                "message": "No write permission(s) for field(s): target_temperature_f",
                "instance": "3c0f6a4e-0000-4000-8000-000000000000",
                "details": {"fields": "target_temperature_f"}
            })
        );
        assert!(ApiError::unauthorized().to_json("x").get("details").is_none());
    }

    #[test]
    fn one_decimal_formats() {
        assert_eq!(one_decimal(74.0), "74.0");
        assert_eq!(one_decimal(20.5), "20.5");
        assert_eq!(one_decimal(100.0), "100.0");
    }
}
