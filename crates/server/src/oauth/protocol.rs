//! The protocol's plain parts, without HTTP handlers: request parameters (a name given twice
//! is refused), PKCE S256, secret verification off the async threads, codes and PINs, HTTP
//! Basic client credentials, and the RFC 6749 error answer.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Largest parameter value accepted by the OAuth endpoints.
const MAX_PARAM: usize = 2048;

/// Request parameters from a query string and/or a form body; a name given twice is an error.
pub struct Params(Vec<(String, String)>);

#[derive(Debug)]
pub enum ParamError {
    Repeated(String),
    TooLarge(String),
}

impl Params {
    pub fn parse(sources: &[&[u8]]) -> Result<Params, ParamError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for src in sources {
            for (k, v) in form_urlencoded::parse(src) {
                if v.len() > MAX_PARAM || k.len() > 64 {
                    return Err(ParamError::TooLarge(k.chars().take(64).collect()));
                }
                if out.iter().any(|(n, _)| *n == k) {
                    return Err(ParamError::Repeated(k.into_owned()));
                }
                out.push((k.into_owned(), v.into_owned()));
            }
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub(super) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Like [`Params::parse`], but a checkbox list (`home=a&home=b`) may repeat.
pub(super) fn parse_form_with_lists(body: &[u8], lists: &[&str]) -> Result<Params, ParamError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if v.len() > MAX_PARAM || k.len() > 64 {
            return Err(ParamError::TooLarge(k.chars().take(64).collect()));
        }
        if !lists.contains(&k.as_ref()) && out.iter().any(|(n, _)| *n == k) {
            return Err(ParamError::Repeated(k.into_owned()));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(Params(out))
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Checks a password or client secret against its Argon2id hash (off the async threads).
pub async fn verify_secret(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::PasswordVerifier;
        use argon2::password_hash::phc::PasswordHash;
        PasswordHash::new(&hash)
            .map(|h| argon2::Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A code or PIN from an unambiguous alphabet (no 0/O, 1/I).
pub(super) fn random_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = vec![0u8; len];
    if getrandom::fill(&mut buf).is_err() {
        std::process::abort();
    }
    // 256 is a multiple of 32: no modulo bias.
    buf.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        json!({"error": error, "error_description": description, "instance_id": uuid::Uuid::new_v4().to_string()})
            .to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn param_error(e: ParamError) -> Response {
    match e {
        ParamError::Repeated(n) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &format!("repeated parameter: {n}"))
        }
        ParamError::TooLarge(n) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &format!("parameter too large: {n}"))
        }
    }
}

/// `client_id:client_secret` from HTTP Basic, when given.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((unescape(id), unescape(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_vector() {
        // RFC 7636 Appendix B.
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn params_refuse_repeats_and_oversize() {
        assert!(matches!(Params::parse(&[b"a=1&a=2"]), Err(ParamError::Repeated(n)) if n == "a"));
        assert!(matches!(Params::parse(&[b"a=1", b"a=2"]), Err(ParamError::Repeated(_))));
        let big = format!("a={}", "x".repeat(MAX_PARAM + 1));
        assert!(matches!(Params::parse(&[big.as_bytes()]), Err(ParamError::TooLarge(_))));
        let p = Params::parse(&[b"a=1&b=", b"c=x%20y"]).unwrap();
        assert_eq!((p.get("a"), p.get("b"), p.get("c")), (Some("1"), None, Some("x y")));
    }

    #[test]
    fn codes_use_the_unambiguous_alphabet() {
        let c = random_code(16);
        assert_eq!(c.len(), 16);
        assert!(c.chars().all(|ch| "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(ch)));
    }
}
