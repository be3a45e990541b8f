//! Random identifiers and secrets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `n` random bytes, base64url without padding.
pub fn random_b64(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS random source failing is unrecoverable for a service that issues secrets.
    if getrandom::fill(&mut buf).is_err() {
        tracing::error!("the operating system's random source failed");
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// A device or structure id: 32 characters, like the original API's ids.
pub fn element_id() -> String {
    random_b64(24)
}

/// An obfuscated user id in the original form `z.1.1.<random>`.
pub fn user_id() -> String {
    format!("z.1.1.{}", random_b64(18))
}

/// An access token: `c.` and 256 random bits.
pub fn access_token() -> String {
    format!("c.{}", random_b64(32))
}
