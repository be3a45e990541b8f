//! Safety rules of one element write, with the exact error texts of docs/compatibility.md §2.
//!
//! Thermostat checks run in this order (the order, which moves the emergency-heat and
//! safety-shutoff checks ahead of target checks because they protect people and equipment):
//! `hvac_mode` vs `can_heat`/`can_cool` → emergency heat → smoke/CO safety shutoff → mode
//! gating of targets → absolute ranges → lock ranges → heat-cool order and spread → fan timer.
//! Every check looks at the state *after* the write (a request that sets `hvac_mode` and a
//! target together is judged in the new mode).

use chrono::Duration;
use serde_json::Value;

use crate::context::{Actor, WriteContext};
use crate::error::{ApiError, ErrorKind, one_decimal};
use crate::fields::FieldMap;
use crate::fields::{flag, merge_fields, num, text};
use crate::home::Home;
use crate::schema::{Entity, FAN_DURATIONS, TWINS};
use crate::units::{self, EPOCH};

/// A target temperature field and its twin in the other scale.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// `target_temperature`, `target_temperature_low`, `target_temperature_high`.
    base: &'static str,
    f: &'static str,
    c: &'static str,
}

const SINGLE: Target =
    Target { base: "target_temperature", f: "target_temperature_f", c: "target_temperature_c" };
const LOW: Target =
    Target { base: "target_temperature_low", f: "target_temperature_low_f", c: "target_temperature_low_c" };
const HIGH: Target = Target {
    base: "target_temperature_high",
    f: "target_temperature_high_f",
    c: "target_temperature_high_c",
};
const TARGETS: [Target; 3] = [SINGLE, LOW, HIGH];

/// Checks a thermostat write against its current state and returns the new state, with the
/// twin of every written temperature derived and the fan timer computed.
pub fn thermostat(
    current: &FieldMap,
    w: &FieldMap,
    home: &Home,
    ctx: &WriteContext<'_>,
) -> Result<FieldMap, ApiError> {
    let old_mode = text(current, "hvac_mode");
    let new_mode = w.get("hvac_mode").and_then(Value::as_str).unwrap_or(old_mode);
    let mode_written = w.contains_key("hvac_mode") && new_mode != old_mode;

    // hvac_mode vs can_heat / can_cool.
    if mode_written {
        let needs: &[(&str, &str)] = match new_mode {
            "heat" => &[("can_heat", "heat")],
            "cool" => &[("can_cool", "cool")],
            "heat-cool" => &[("can_heat", "heat"), ("can_cool", "cool")],
            _ => &[],
        };
        for (cap, action) in needs {
            if !flag(current, cap) {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "incompatible-mode",
                    format!("Cannot change HVAC mode to {new_mode}: HVAC cannot {action}"),
                )
                .with("mode", new_mode)
                .with("action", *action));
            }
        }
    }

    // Emergency heat: the AC must not run while the heat pump's emergency heat is on.
    if mode_written
        && ctx.config.no_cooling_during_emergency_heat
        && matches!(new_mode, "cool" | "heat-cool")
        && flag(current, "is_using_emergency_heat")
    {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "emergency-heat",
            format!("Cannot change HVAC mode to {new_mode} while emergency heat is on"),
        )
        .with("mode", new_mode));
    }

    // Smoke/CO safety shutoff: no mode change, no fan.
    if home.safety_shutoff() && !matches!(ctx.actor, Actor::Service) {
        if mode_written {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "safety-shutoff-on",
                "Cannot change HVAC mode during smoke/co safety shutoff",
            ));
        }
        if w.get("fan_timer_active") == Some(&Value::Bool(true)) {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "safety-shutoff-on",
                "Cannot activate fan during smoke/co safety shutoff",
            ));
        }
    }

    // Mode gating of targets.
    let written: Vec<(Target, bool)> = TARGETS
        .iter()
        .flat_map(|t| {
            [(t.f, true), (t.c, false)]
                .into_iter()
                .filter(|(k, _)| w.contains_key(k))
                .map(|(_, is_f)| (*t, is_f))
        })
        .collect();
    if !written.is_empty() {
        if matches!(new_mode, "eco" | "off") {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "mode-error",
                format!("Cannot change target temperature while mode is {new_mode}"),
            )
            .with("mode", new_mode));
        }
        for (t, _) in &written {
            let wrong = match new_mode {
                "heat-cool" => t.base == SINGLE.base,
                _ => t.base != SINGLE.base,
            };
            if wrong {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "mode-error",
                    format!("Cannot set {} while mode is {new_mode}", t.base),
                )
                .with("fieldName", t.base)
                .with("mode", new_mode));
            }
        }
    }

    // Absolute ranges, in the scale written.
    for (t, is_f) in &written {
        let key = if *is_f { t.f } else { t.c };
        let v = num(w, key).unwrap_or_default();
        let (lo, hi, scale, detail) =
            if *is_f { (50.0, 90.0, "F", "tempF") } else { (9.0, 32.0, "C", "tempC") };
        if v > hi {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                if *is_f { "high-f-value" } else { "high-c-value" },
                format!("Temperature {scale} value is too high: {}", one_decimal(v)),
            )
            .with(detail, one_decimal(v)));
        }
        if v < lo {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                if *is_f { "low-f-value" } else { "low-c-value" },
                format!("Temperature {scale} value is too low: {}", one_decimal(v)),
            )
            .with(detail, one_decimal(v)));
        }
    }

    // Both scales of one target in one request must agree.
    for t in TARGETS {
        if let (Some(f), Some(c)) = (num(w, t.f), num(w, t.c))
            && units::f_to_c(f) != c
            && units::c_to_f(c) != f
        {
            return Err(ApiError::invalid_value(t.c, &format!("the same temperature as {}", t.f)));
        }
    }

    // Lock range.
    if flag(current, "is_locked") {
        for (t, is_f) in &written {
            let (key, min_k, max_k, scale, detail) = if *is_f {
                (t.f, "locked_temp_min_f", "locked_temp_max_f", "F", "tempF")
            } else {
                (t.c, "locked_temp_min_c", "locked_temp_max_c", "C", "tempC")
            };
            let v = num(w, key).unwrap_or_default();
            if let Some(max) = num(current, max_k).filter(|max| v > *max) {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    if *is_f { "high-f-value-4-lock" } else { "high-c-value-4-lock" },
                    format!(
                        "Temperature {scale} '{}' is too high for lock temperature '{}'",
                        one_decimal(v),
                        one_decimal(max)
                    ),
                )
                .with(detail, one_decimal(v))
                .with("highLockTemp", one_decimal(max)));
            }
            if let Some(min) = num(current, min_k).filter(|min| v < *min) {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    if *is_f { "low-f-value-4-lock" } else { "low-c-value-4-lock" },
                    format!(
                        "Temperature {scale} '{}' is too low for lock temperature '{}'",
                        one_decimal(v),
                        one_decimal(min)
                    ),
                )
                .with(detail, one_decimal(v))
                .with("lowLockTemp", one_decimal(min)));
            }
        }
    }

    // Apply the written fields and derive the twins.
    let mut next = merge_fields(current, w);
    derive_written_twins(&mut next, w);

    // heat-cool: low below high, at least the minimum spread apart.
    let low_high_written = written.iter().any(|(t, _)| t.base != SINGLE.base);
    if new_mode == "heat-cool" && (low_high_written || mode_written) {
        let in_f = written.iter().all(|(_, is_f)| *is_f);
        let (lk, hk, spread, scale) = if in_f {
            (LOW.f, HIGH.f, ctx.config.min_spread_f, "F")
        } else {
            (LOW.c, HIGH.c, ctx.config.min_spread_c, "C")
        };
        if let (Some(low), Some(high)) = (num(&next, lk), num(&next, hk)) {
            if low >= high {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "low-high-error",
                    format!(
                        "Cannot set target low temperature '{}' higher than target high temperature '{}'",
                        one_decimal(low),
                        one_decimal(high)
                    ),
                )
                .with("lowTemp", one_decimal(low))
                .with("highTemp", one_decimal(high)));
            }
            if high - low < spread {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "spread-error",
                    format!(
                        "Cannot set target temperature closer than {} degrees {scale}",
                        one_decimal(spread)
                    ),
                )
                .with("spread", one_decimal(spread))
                .with("scale", scale));
            }
        }
    }

    // Fan timer.
    if w.get("fan_timer_active") == Some(&Value::Bool(true)) && !flag(current, "has_fan") {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "no-fan",
            "Cannot activate fan: the HVAC system has no fan",
        ));
    }
    if let Some(d) = w.get("fan_timer_duration").and_then(Value::as_i64)
        && !FAN_DURATIONS.contains(&d)
    {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "fan-duration",
            format!(
                "Fan timer duration {d} is not allowed; allowed minutes: {}",
                FAN_DURATIONS.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
        )
        .with("fan_timer_duration", d.to_string()));
    }
    if w.contains_key("fan_timer_active") || w.contains_key("fan_timer_duration") {
        let timeout = if flag(&next, "fan_timer_active") {
            let minutes = num(&next, "fan_timer_duration").unwrap_or(15.0) as i64;
            units::format_time(ctx.now + Duration::minutes(minutes))
        } else {
            EPOCH.to_string()
        };
        next.insert("fan_timer_timeout", Value::from(timeout));
    }
    Ok(next)
}

/// Sets the twin of each temperature written in one scale only.
fn derive_written_twins(next: &mut FieldMap, w: &FieldMap) {
    for (f, c) in TWINS {
        match (num(w, f), num(w, c)) {
            (Some(fv), None) => {
                next.insert(*c, units::c_json(units::f_to_c(fv)));
            }
            (None, Some(cv)) => {
                next.insert(*f, units::f_json(units::c_to_f(cv)));
            }
            _ => {}
        }
    }
}

/// Checks a structure write and returns the new structure object.
pub fn structure(
    current: &FieldMap,
    w: &FieldMap,
    _home: &Home,
    ctx: &WriteContext<'_>,
) -> Result<FieldMap, ApiError> {
    let mut next = current.clone();
    for (k, v) in w {
        match k.as_str() {
            "eta" => apply_eta(&mut next, v)?,
            "wheres" => create_where(&mut next, v)?,
            "name" if v.as_str().is_some_and(|s| s.trim().is_empty()) => {
                return Err(ApiError::invalid_value("name", "a non-empty string"));
            }
            _ => {
                next.insert(k.clone(), v.clone());
            }
        }
    }
    let _ = ctx;
    Ok(next)
}

/// A device's own report: `applied_version` may not run ahead of what is intended, and each
/// reported field's measurement time is kept (internal `reported_at`) so a late report of it
/// can be recognised ([`crate::write::drop_stale_reports`]).
pub fn device_report(
    current: &FieldMap,
    next: &mut FieldMap,
    kind: Entity,
    w: &FieldMap,
    ctx: &WriteContext<'_>,
) -> Result<(), ApiError> {
    if let Some(applied) = w.get("applied_version").and_then(Value::as_u64) {
        let intended = current.get("intended_version").and_then(Value::as_u64).unwrap_or(0);
        if applied > intended {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "applied-ahead",
                format!("applied_version {applied} is ahead of intended_version {intended}"),
            )
            .with("applied_version", applied.to_string())
            .with("intended_version", intended.to_string()));
        }
    }
    let measured = Value::from(ctx.measured());
    let mut stamps = current.get("reported_at").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut stamped = false;
    for f in w.keys().filter(|f| crate::schema::is_reported(kind, f)) {
        stamps.insert(f.to_string(), measured.clone());
        stamped = true;
    }
    if stamped {
        next.insert("reported_at", Value::Object(stamps));
    }
    Ok(())
}

/// ETA (docs/compatibility.md §1): `{trip_id, estimated_arrival_window_begin, _end}`; begin `0`
/// cancels the trip. Stored write-only under `eta`; home logic derives `eta_begin`.
fn apply_eta(structure: &mut FieldMap, v: &Value) -> Result<(), ApiError> {
    let Some(eta) = v.as_object() else {
        return Err(ApiError::invalid_value("eta", "an object"));
    };
    if let Some(k) = eta.keys().find(|k| {
        !matches!(k.as_str(), "trip_id" | "estimated_arrival_window_begin" | "estimated_arrival_window_end")
    }) {
        return Err(ApiError::invalid_value(
            &format!("eta.{k}"),
            "no such field; eta has trip_id, estimated_arrival_window_begin, estimated_arrival_window_end",
        ));
    }
    let trip = match eta.get("trip_id").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && t.chars().count() <= 128 => t,
        _ => {
            return Err(ApiError::invalid_value(
                "eta.trip_id",
                "a non-empty string of at most 128 characters",
            ));
        }
    };
    let begin = eta.get("estimated_arrival_window_begin");
    if begin.and_then(Value::as_f64) == Some(0.0) {
        // Cancel: only the active trip with this id.
        let active = structure.get("eta").and_then(|e| e.get("trip_id")).and_then(Value::as_str);
        if active == Some(trip) {
            structure.remove("eta");
        }
        return Ok(());
    }
    let begin = begin.and_then(Value::as_str).and_then(units::parse_time).ok_or_else(|| {
        ApiError::invalid_value("eta.estimated_arrival_window_begin", "an ISO 8601 time, or 0 to cancel")
    })?;
    let end = eta
        .get("estimated_arrival_window_end")
        .and_then(Value::as_str)
        .and_then(units::parse_time)
        .ok_or_else(|| ApiError::invalid_value("eta.estimated_arrival_window_end", "an ISO 8601 time"))?;
    if begin > end {
        return Err(ApiError::new(
            ErrorKind::Invalid,
            "eta-window",
            "ETA window begin must not be later than its end",
        )
        .with("estimated_arrival_window_begin", units::format_time(begin))
        .with("estimated_arrival_window_end", units::format_time(end)));
    }
    structure.insert(
        "eta",
        serde_json::json!({
            "trip_id": trip,
            "estimated_arrival_window_begin": units::format_time(begin),
            "estimated_arrival_window_end": units::format_time(end),
        }),
    );
    Ok(())
}

/// Creates a custom where from `{"name": "…"}`. Names are unique; creating an existing name
/// is a no-op. The id is derived from the name so that a retried request makes no duplicate.
fn create_where(structure: &mut FieldMap, v: &Value) -> Result<(), ApiError> {
    let name = match v.as_object() {
        Some(o) if o.len() == 1 => o.get("name").and_then(Value::as_str),
        _ => None,
    };
    let Some(name) = name.filter(|n| !n.trim().is_empty() && n.chars().count() <= 64) else {
        return Err(ApiError::invalid_value("wheres", "{\"name\": \"<new room name>\"}"));
    };
    let wheres = structure.object_mut("wheres");
    if wheres.values().any(|w| w.get("name").and_then(Value::as_str) == Some(name)) {
        return Ok(());
    }
    let id = where_id_for(name);
    wheres.insert(id.clone(), serde_json::json!({"where_id": id, "name": name}));
    Ok(())
}

/// A stable where id for a custom where name (FNV-1a, hex).
pub fn where_id_for(name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("w{h:016x}")
}

/// Product data must be an object of bounded depth in the structure it names.
pub fn product_data(fields: &FieldMap, structure_id: &str) -> Result<(), ApiError> {
    if let Some(sid) = fields.get("location").and_then(|l| l.get("structure_id"))
        && sid.as_str() != Some(structure_id)
    {
        return Err(ApiError::invalid_value(
            "location.structure_id",
            "the structure that holds this product data",
        ));
    }
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if fields.values().map(depth).max().unwrap_or(0) > 6 {
        return Err(ApiError::invalid_content_because("product data is nested too deeply"));
    }
    Ok(())
}
