//! Data locations: URL paths into the home document (`/devices/thermostats/<id>/hvac_mode`).
//!
//! A location is a list of decoded segments. Parsing percent-decodes each segment, drops empty
//! segments (so `//` and a trailing `/` mean nothing), and refuses what could never name a key:
//! `.` and `..`, invalid UTF-8, control characters, and paths that are too long or too deep.
//! `Display` percent-encodes again, so `parse(loc.to_string()) == loc`.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::Value;

use crate::error::ApiError;

/// Longest accepted path in bytes, as sent (before decoding).
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest accepted path; the document is at most 5 levels deep below a device.
pub const MAX_DEPTH: usize = 16;

/// Characters escaped when a segment is written back into a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Location {
    segments: Vec<String>,
}

impl Location {
    pub fn root() -> Location {
        Location::default()
    }

    pub fn from_segments<I, S>(segments: I) -> Location
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Location { segments: segments.into_iter().map(Into::into).collect() }
    }

    /// Parses the path part of a URL (no query string).
    pub fn parse(path: &str) -> Result<Location, ApiError> {
        if path.len() > MAX_PATH_BYTES {
            return Err(ApiError::bad_location(format!("the path is longer than {MAX_PATH_BYTES} bytes")));
        }
        let mut segments = Vec::with_capacity(4);
        for raw in path.split('/') {
            if raw.is_empty() {
                continue;
            }
            // A segment without an escape is its own decoding (`path` is UTF-8 already).
            let decoded = if raw.contains('%') {
                percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| ApiError::bad_location("a segment is not valid UTF-8"))?
            } else {
                Cow::Borrowed(raw)
            };
            if decoded == "." || decoded == ".." {
                return Err(ApiError::bad_location("'.' and '..' segments are not allowed"));
            }
            if decoded.is_empty() {
                continue;
            }
            let control = if decoded.is_ascii() {
                decoded.bytes().any(|b| b.is_ascii_control())
            } else {
                decoded.chars().any(char::is_control)
            };
            if control {
                return Err(ApiError::bad_location("a segment contains a control character"));
            }
            segments.push(decoded.into_owned());
            if segments.len() > MAX_DEPTH {
                return Err(ApiError::bad_location(format!("the path is deeper than {MAX_DEPTH} segments")));
            }
        }
        Ok(Location { segments })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        self.segments.get(i).map(String::as_str)
    }

    pub fn child(&self, segment: impl Into<String>) -> Location {
        let mut l = self.clone();
        l.segments.push(segment.into());
        l
    }

    /// True when `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &Location) -> bool {
        self.segments.len() >= other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| a == b)
    }

    /// Reads the value at this location in a JSON tree.
    pub fn resolve<'v>(&self, mut v: &'v Value) -> Option<&'v Value> {
        for s in &self.segments {
            v = match v {
                Value::Object(m) => m.get(s)?,
                Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Wraps `value` in objects so that it sits at this location in a tree rooted at `/`.
    pub fn wrap(&self, value: Value) -> Value {
        self.segments.iter().rev().fold(value, |inner, key| {
            let mut m = serde_json::Map::new();
            m.insert(key.clone(), inner);
            Value::Object(m)
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            write!(f, "/{}", utf8_percent_encode(s, SEGMENT))?;
        }
        Ok(())
    }
}

/// The text of the location `segment` below the location whose text is `parent` (`""` or
/// `"/"` for the root): what `Display` writes for the child, without building it.
pub fn child_text(parent: &str, segment: &str) -> String {
    let parent = parent.strip_suffix('/').unwrap_or(parent);
    let mut out = String::with_capacity(parent.len() + 1 + segment.len());
    out.push_str(parent);
    out.push('/');
    out.extend(utf8_percent_encode(segment, SEGMENT));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #[test]
        fn child_text_is_the_childs_display(segments in proptest::collection::vec("[a-z %/?#é.]{1,6}", 0..4), last in "[a-z %/?#é.]{1,6}") {
            let parent = Location::root();
            let parent = segments.iter().fold(parent, |l, s| l.child(s.clone()));
            prop_assert_eq!(child_text(&parent.to_string(), &last), parent.child(last.clone()).to_string());
        }
    }

    #[test]
    fn parses_plain_and_odd_paths() {
        let l = Location::parse("/devices/thermostats/abc/target_temperature_f").unwrap();
        assert_eq!(l.segments(), ["devices", "thermostats", "abc", "target_temperature_f"]);
        assert_eq!(
            Location::parse("//devices///thermostats/").unwrap().segments(),
            ["devices", "thermostats"]
        );
        assert!(Location::parse("/").unwrap().is_root());
        assert!(Location::parse("").unwrap().is_root());
        assert_eq!(Location::parse("/a%20b/c%2Fd").unwrap().segments(), ["a b", "c/d"]);
        assert_eq!(Location::parse("/été/%C3%A9t%C3%A9/a+b").unwrap().segments(), ["été", "été", "a+b"]);
    }

    #[test]
    fn refuses_what_cannot_be_a_key() {
        // Escaped or not, ASCII or not: a control character (C0, DEL, C1) is refused.
        for bad in [
            "/devices/../metadata",
            "/./devices",
            "/%2e%2e",
            "/a%ff",
            "/a%0a",
            "/a\tb",
            "/a\u{7f}",
            "/é\u{85}",
            "/é%c2%85",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::Invalid, "{bad}");
            assert_eq!(e.error, "Invalid data location", "{bad}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert!(Location::parse(&long).is_err());
        let deep = "/a".repeat(MAX_DEPTH + 1);
        assert!(Location::parse(&deep).is_err());
        assert!(Location::parse(&"/a".repeat(MAX_DEPTH)).is_ok());
    }

    #[test]
    fn resolves_objects_arrays_and_misses() {
        let doc = json!({"a": {"b": [10, {"c": true}]}});
        assert_eq!(Location::parse("/a/b/0").unwrap().resolve(&doc), Some(&json!(10)));
        assert_eq!(Location::parse("/a/b/1/c").unwrap().resolve(&doc), Some(&json!(true)));
        assert_eq!(Location::parse("/a/x").unwrap().resolve(&doc), None);
        assert_eq!(Location::parse("/a/b/c").unwrap().resolve(&doc), None);
        assert_eq!(Location::root().resolve(&doc), Some(&doc));
    }

    #[test]
    fn wrap_places_a_value() {
        let l = Location::parse("/structures/s1/away").unwrap();
        assert_eq!(l.wrap(json!("away")), json!({"structures": {"s1": {"away": "away"}}}));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = Location::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_escapes(s in "(/|%[0-9a-fA-F]{2}|[a-z.]){0,80}") {
            let _ = Location::parse(&s);
        }

        #[test]
        fn display_round_trips(segs in proptest::collection::vec("[^\\x00-\\x1f\\x7f]{1,12}", 0..8)) {
            let segs: Vec<String> = segs
                .into_iter()
                .filter(|s| s != "." && s != ".." && !s.chars().any(char::is_control))
                .collect();
            let l = Location::from_segments(segs);
            let again = Location::parse(&l.to_string()).unwrap();
            prop_assert_eq!(again, l);
        }
    }
}
