//! Small HTTP helpers shared by the handlers: JSON answers, credentials and query
//! parameters, bodies, ETags, rate-limit headers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use roost_model::ApiError;
use roost_model::view::Snapshot;
use serde_json::Value;
use std::sync::Arc;

pub fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, roost_model::json_text(v)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    resp
}

/// The token of a request: `Authorization: Bearer …` or `?auth=…`.
pub fn token_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    query_param(uri, "auth")
}

/// A query parameter, percent-decoded (`+` is a space).
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned()
        })
    })
}

/// A request body read up to the limit (413 past it); judged only once the caller is known.
pub type Received = Result<Bytes, ApiError>;

pub async fn read_body(body: Body, limit: usize) -> Received {
    axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::payload_too_large(limit))
}

/// Parses a body: UTF-8 and JSON (400). Returns the value and the bytes as sent.
pub fn json_body(received: Received) -> Result<(Value, Bytes), ApiError> {
    let bytes = received?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid_content_because("the body is not UTF-8"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let why = match e.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "bad data",
            serde_json::error::Category::Eof => "unexpected end",
        };
        ApiError::invalid_content_because(format!("the body is not JSON ({why})"))
    })?;
    Ok((value, bytes))
}

/// The ETag of what a location covers: the structure's revision, or a list for several.
pub fn etag(covered: &[&Arc<Snapshot>]) -> HeaderValue {
    let tag = match covered {
        [one] => format!("\"{}\"", one.revision),
        many => format!(
            "\"{}\"",
            many.iter().map(|s| format!("{}.{}", s.home.id(), s.revision)).collect::<Vec<_>>().join("-")
        ),
    };
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether the request's `If-Match` (if any) names `current`.
pub fn if_match_ok(headers: &HeaderMap, current: &HeaderValue) -> bool {
    let Some(v) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    v.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == current.to_str().unwrap_or(""))
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` of a product's call budget.
pub fn add_budget_headers(h: &mut HeaderMap, b: &crate::ratelimit::Budget) {
    if b.limit == 0 {
        return;
    }
    for (name, v) in [
        ("ratelimit-limit", b.limit as u64),
        ("ratelimit-remaining", b.remaining as u64),
        ("ratelimit-reset", b.reset),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
            h.insert(name, v);
        }
    }
}

/// The first 4 bytes of a token hash in hex: how logs, limiter keys and audit names refer to
/// a token without revealing it.
pub fn hex8(hash: &[u8; 32]) -> String {
    crate::ids::hex(&hash[..4])
}
