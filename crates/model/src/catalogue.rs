//! Every error the API answers, one row each: what the reference page (`/reference`) shows
//! under `#error-<anchor>` and what an error's `type` links to. The test below reads the
//! sources that build errors and fails when an anchor is used without a row here, or a row
//! names an anchor nothing uses: the catalogue cannot drift from the code.

use crate::error::ErrorKind;

/// One error of the API.
#[derive(Debug, Clone, Copy)]
pub struct ErrorEntry {
    /// The `#…` of its `type` link.
    pub anchor: &'static str,
    pub kind: ErrorKind,
    /// The `error` text (`{…}` marks what the request fills in).
    pub text: &'static str,
    /// When it is answered, and what to do.
    pub when: &'static str,
    /// Fields whose writes it can refuse (`entity/field`; empty: any request).
    pub fields: &'static [&'static str],
}

use ErrorKind as K;

const fn e(
    anchor: &'static str,
    kind: ErrorKind,
    text: &'static str,
    when: &'static str,
    fields: &'static [&'static str],
) -> ErrorEntry {
    ErrorEntry { anchor, kind, text, when, fields }
}

const TARGETS: &[&str] = &[
    "thermostat/target_temperature_f",
    "thermostat/target_temperature_c",
    "thermostat/target_temperature_low_f",
    "thermostat/target_temperature_low_c",
    "thermostat/target_temperature_high_f",
    "thermostat/target_temperature_high_c",
];
const RANGE: &[&str] = &[
    "thermostat/target_temperature_low_f",
    "thermostat/target_temperature_low_c",
    "thermostat/target_temperature_high_f",
    "thermostat/target_temperature_high_c",
];

pub static ERRORS: &[ErrorEntry] = &[
    // ---- Rules of the home (400) ----
    e(
        "incompatible-mode",
        K::Invalid,
        "Cannot change HVAC mode to {mode}: HVAC cannot {action}",
        "The system cannot heat (or cool) for the mode asked (can_heat, can_cool).",
        &["thermostat/hvac_mode"],
    ),
    e(
        "emergency-heat",
        K::Invalid,
        "Cannot change HVAC mode to {mode} while emergency heat is on",
        "A heat pump on emergency heat must not cool: no cool or heat-cool until it is off.",
        &["thermostat/hvac_mode"],
    ),
    e(
        "safety-shutoff-on",
        K::Invalid,
        "Cannot change HVAC mode during smoke/co safety shutoff",
        "A Protect sensed smoke or CO and the HVAC was shut off; the mode and the fan wait until it clears.",
        &["thermostat/hvac_mode", "thermostat/fan_timer_active"],
    ),
    e(
        "mode-error",
        K::Invalid,
        "Cannot set {field} while mode is {mode}",
        "Targets follow the mode: one target in heat or cool, a low and a high in heat-cool, none in eco or off.",
        TARGETS,
    ),
    e(
        "high-f-value",
        K::Invalid,
        "Temperature F value is too high: {value}",
        "Targets in °F are at most 90.",
        TARGETS,
    ),
    e(
        "low-f-value",
        K::Invalid,
        "Temperature F value is too low: {value}",
        "Targets in °F are at least 50.",
        TARGETS,
    ),
    e(
        "high-c-value",
        K::Invalid,
        "Temperature C value is too high: {value}",
        "Targets in °C are at most 32.",
        TARGETS,
    ),
    e(
        "low-c-value",
        K::Invalid,
        "Temperature C value is too low: {value}",
        "Targets in °C are at least 9.",
        TARGETS,
    ),
    e(
        "high-f-value-4-lock",
        K::Invalid,
        "Temperature F '{value}' is too high for lock temperature '{lock}'",
        "The thermostat is locked to a range (is_locked); targets stay inside it.",
        TARGETS,
    ),
    e(
        "low-f-value-4-lock",
        K::Invalid,
        "Temperature F '{value}' is too low for lock temperature '{lock}'",
        "The thermostat is locked to a range (is_locked); targets stay inside it.",
        TARGETS,
    ),
    e(
        "high-c-value-4-lock",
        K::Invalid,
        "Temperature C '{value}' is too high for lock temperature '{lock}'",
        "The thermostat is locked to a range (is_locked); targets stay inside it.",
        TARGETS,
    ),
    e(
        "low-c-value-4-lock",
        K::Invalid,
        "Temperature C '{value}' is too low for lock temperature '{lock}'",
        "The thermostat is locked to a range (is_locked); targets stay inside it.",
        TARGETS,
    ),
    e(
        "low-high-error",
        K::Invalid,
        "Cannot set target low temperature '{low}' higher than target high temperature '{high}'",
        "In heat-cool the low end stays below the high end.",
        RANGE,
    ),
    e(
        "spread-error",
        K::Invalid,
        "Cannot set target temperature closer than {spread} degrees {scale}",
        "In heat-cool the two ends stay at least 3 °F (1.5 °C) apart, so heating and cooling never fight.",
        RANGE,
    ),
    e(
        "no-fan",
        K::Invalid,
        "Cannot activate fan: the HVAC system has no fan",
        "The fan timer needs a system with a fan (has_fan).",
        &["thermostat/fan_timer_active"],
    ),
    e(
        "fan-duration",
        K::Invalid,
        "Fan timer duration {minutes} is not allowed; allowed minutes: {list}",
        "The fan runs for one of the fixed durations.",
        &["thermostat/fan_timer_duration"],
    ),
    e(
        "applied-ahead",
        K::Invalid,
        "applied_version {applied} is ahead of intended_version {intended}",
        "A device reports applying a version of the intended state that was never intended.",
        &["thermostat/applied_version", "smoke_co_alarm/applied_version", "camera/applied_version"],
    ),
    e(
        "eta-window",
        K::Invalid,
        "ETA window begin must not be later than its end",
        "An ETA's arrival window must begin before it ends.",
        &["structure/eta"],
    ),
    e(
        "multiple-structures",
        K::Invalid,
        "A write may change only one structure at a time",
        "One request is all or nothing within one home; write each home on its own.",
        &[],
    ),
    // ---- The request itself (400, 401, 404, 405, 412, 413) ----
    e(
        "invalid-content-sent",
        K::Invalid,
        "Invalid content sent",
        "The body is not JSON, or not the JSON shape the location takes.",
        &[],
    ),
    e(
        "no-write-permission",
        K::Invalid,
        "No write permission(s) for field(s): {fields}",
        "The token's permissions do not cover writing these fields (see who may write each field above).",
        &[],
    ),
    e(
        "unknown-field",
        K::Invalid,
        "Unknown field(s) of {element}: {fields}",
        "The element has no such field (a misspelling, most often: the message suggests the closest).",
        &[],
    ),
    e(
        "invalid-value",
        K::Invalid,
        "Invalid value for {field}: expected {expected}",
        "The value has the wrong type or is not one of the allowed values.",
        &[],
    ),
    e(
        "format-error",
        K::Invalid,
        "Temperature '{field}' is in wrong format",
        "°F targets are whole numbers; °C targets are in steps of 0.5.",
        TARGETS,
    ),
    e(
        "invalid-location",
        K::Invalid,
        "Invalid data location",
        "The path is not a data location (empty segments, odd characters, too deep).",
        &[],
    ),
    e(
        "invalid-header",
        K::Invalid,
        "Invalid {header} header: expected {expected}",
        "A header Roost reads (Idempotency-Key, Roost-Measured-At, If-Match) is malformed.",
        &[],
    ),
    e(
        "auth-error",
        K::Unauthorized,
        "unauthorized",
        "No token, an unknown one, or a revoked one. Get a token through OAuth (or `roost admin token issue`).",
        &[],
    ),
    e(
        "not-found",
        K::NotFound,
        "not found",
        "Nothing at that location, or nothing the token may see there.",
        &[],
    ),
    e(
        "method-not-allowed",
        K::MethodNotAllowed,
        "method not allowed",
        "The data API takes GET, PUT and PATCH.",
        &[],
    ),
    e(
        "precondition-failed",
        K::PreconditionFailed,
        "precondition failed",
        "If-Match named a revision that is no longer current: read again, decide again, write again.",
        &[],
    ),
    e(
        "payload-too-large",
        K::PayloadTooLarge,
        "payload too large",
        "The body is larger than the server's limit (64 KiB by default).",
        &[],
    ),
    // ---- Limits and the service (429, 500, 503) ----
    e(
        "blocked",
        K::Blocked,
        "blocked",
        "A rate or stream limit was reached; Retry-After (and details.retry_after) says when to try again.",
        &[],
    ),
    e(
        "internal-error",
        K::Internal,
        "Internal Error",
        "A fault of the service; the instance id identifies it in the server's log.",
        &[],
    ),
    e(
        "service-unavailable",
        K::Unavailable,
        "service unavailable",
        "Storage is unreachable or the server is closing: nothing was changed; retry later.",
        &[],
    ),
];

/// The catalogue's row for `anchor`.
pub fn error(anchor: &str) -> Option<&'static ErrorEntry> {
    ERRORS.iter().find(|e| e.anchor == anchor)
}

/// The rows that can refuse a write to `entity/field`.
pub fn refusing(field: &str) -> impl Iterator<Item = &'static ErrorEntry> + '_ {
    ERRORS.iter().filter(move |e| e.fields.contains(&field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every anchor the code builds an error with, from the sources that build errors.
    fn anchors_in_code() -> BTreeSet<String> {
        let sources = [include_str!("error.rs"), include_str!("rules.rs"), include_str!("write.rs")];
        let mut found = BTreeSet::new();
        for source in sources {
            let mut rest = source;
            while let Some(at) = rest.find("ApiError::new(") {
                rest = &rest[at + "ApiError::new(".len()..];
                // `ApiError::new(kind, anchor, text)`: the anchor is a literal, or an `if` of two.
                let after_kind = rest.split_once(',').map(|(_, a)| a.trim_start()).unwrap_or("");
                let anchor = if after_kind.starts_with("if ") {
                    &after_kind[..after_kind.find("},").map(|i| i + 1).unwrap_or(0)]
                } else {
                    &after_kind[..after_kind.find(',').unwrap_or(0)]
                };
                for literal in anchor.split('"').skip(1).step_by(2) {
                    found.insert(literal.to_string());
                }
            }
        }
        found
    }

    #[test]
    fn every_error_the_code_builds_is_in_the_catalogue_and_no_other() {
        let code = anchors_in_code();
        let listed: BTreeSet<String> = ERRORS.iter().map(|e| e.anchor.to_string()).collect();
        assert!(code.len() >= 30, "the scan found the anchors: {code:?}");
        let missing: Vec<_> = code.difference(&listed).collect();
        let unused: Vec<_> = listed.difference(&code).collect();
        assert!(missing.is_empty(), "errors without a catalogue row: {missing:?}");
        assert!(unused.is_empty(), "catalogue rows nothing builds: {unused:?}");
    }

    #[test]
    fn the_fields_the_catalogue_names_exist() {
        for e in ERRORS {
            for f in e.fields {
                let (entity, path) = f.split_once('/').unwrap_or(("", f));
                let entity = match entity {
                    "thermostat" => crate::schema::Entity::Thermostat,
                    "smoke_co_alarm" => crate::schema::Entity::SmokeCoAlarm,
                    "camera" => crate::schema::Entity::Camera,
                    "structure" => crate::schema::Entity::Structure,
                    other => panic!("{}: unknown entity {other}", e.anchor),
                };
                assert!(crate::schema::field(entity, path).is_some(), "{}: no field {f}", e.anchor);
            }
        }
    }
}
