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

/// A device or structure id: 32 characters, like the original API's ids. It starts with a
/// letter or digit, so it never reads as an option on a command line (`--structure -x…`).
pub fn element_id() -> String {
    loop {
        let id = random_b64(24);
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

/// An obfuscated user id in the original form `z.1.1.<random>`.
pub fn user_id() -> String {
    format!("z.1.1.{}", random_b64(18))
}

/// An access token: `c.` and 256 random bits.
pub fn access_token() -> String {
    format!("c.{}", random_b64(32))
}

/// Lowercase hex of `bytes` (token hashes in logs, audit names and pages).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// 32 bytes from 64 hex digits ([`hex`]'s inverse); `None` for anything else.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lowercase_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x42]), "000fa0ff42");
        assert_eq!(super::hex(&[]), "");
    }

    #[test]
    fn element_ids_start_with_a_letter_or_digit() {
        for _ in 0..2000 {
            let id = super::element_id();
            assert_eq!(id.len(), 32);
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
        }
    }
}
