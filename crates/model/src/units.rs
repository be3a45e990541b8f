//! Temperatures and timestamps as the API writes them.
//!
//! Fahrenheit is whole degrees, Celsius is 0.5 steps; the twin of a written value is derived
//! from it (never the other way round), so a round trip never drifts.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Rounds to the nearest 0.5 (ties away from zero).
pub fn round_half(c: f64) -> f64 {
    (c * 2.0).round() / 2.0
}

pub fn f_to_c(f: f64) -> f64 {
    round_half((f - 32.0) * 5.0 / 9.0)
}

pub fn c_to_f(c: f64) -> f64 {
    (c * 9.0 / 5.0 + 32.0).round()
}

/// The JSON number for a Celsius value: an integer when whole (`20`), else `20.5`.
pub fn c_json(c: f64) -> serde_json::Value {
    let c = round_half(c);
    if c.fract() == 0.0 && c.abs() < 1e9 {
        serde_json::Value::from(c as i64)
    } else {
        serde_json::Value::from(c)
    }
}

/// The JSON number for a Fahrenheit value (always an integer).
pub fn f_json(f: f64) -> serde_json::Value {
    serde_json::Value::from(f.round() as i64)
}

/// The "unset" timestamp.
pub const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// ISO 8601 UTC with milliseconds and `Z`: `2016-10-31T23:59:59.000Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses RFC 3339 with any offset, or a naive `YYYY-MM-DDTHH:MM:SS[.ffffff]` taken as UTC
/// (python-nest sends naive `datetime.isoformat()`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() > 64 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_the_sample_document() {
        // docs/compatibility.md §1 pairs. The sample's values were set in one scale or the other
        // (55 F / 12.5 C came from 12.5 C), so a pair agrees when either side derives the other.
        for (f, c) in [(68.0, 20.0), (79.0, 26.0), (66.0, 19.0), (55.0, 12.5), (70.0, 21.0)] {
            assert!(f_to_c(f) == c || c_to_f(c) == f, "{f} F / {c} C");
        }
        assert_eq!(f_to_c(68.0), 20.0);
        assert_eq!(f_to_c(55.0), 13.0);
        assert_eq!(c_to_f(20.5), 69.0);
        assert_eq!(c_to_f(9.0), 48.0);
    }

    #[test]
    fn json_numbers() {
        assert_eq!(c_json(20.0).to_string(), "20");
        assert_eq!(c_json(20.5).to_string(), "20.5");
        assert_eq!(f_json(71.0).to_string(), "71");
    }

    #[test]
    fn times_parse_and_format() {
        let t = parse_time("2024-01-01T12:00:00.123456").unwrap();
        assert_eq!(format_time(t), "2024-01-01T12:00:00.123Z");
        let t = parse_time("2016-10-31T23:59:59.000Z").unwrap();
        assert_eq!(format_time(t), "2016-10-31T23:59:59.000Z");
        let t = parse_time("2016-10-31T16:00:00-07:00").unwrap();
        assert_eq!(format_time(t), "2016-10-31T23:00:00.000Z");
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
    }
}
