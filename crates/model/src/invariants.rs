//! What must hold of every home after any accepted write. Used by property tests and by the
//! store's conformance suite as an oracle; cheap enough to assert in debug builds.

use serde_json::Value;

use crate::context::RuleConfig;
use crate::home::Home;
use crate::schema::TWINS;
use crate::schema::{self, Entity, FieldType};
use crate::units;

/// Lists every broken invariant (empty when the home is consistent).
pub fn violations(home: &Home, config: &RuleConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (id, t) in home.devices(Entity::Thermostat) {
        let num = |k: &str| t.get(k).and_then(Value::as_f64);
        let mode = t.get("hvac_mode").and_then(Value::as_str).unwrap_or("");
        if !schema::HVAC_MODES.contains(&mode) {
            out.push(format!("{id}: hvac_mode '{mode}' is not a mode"));
        }
        let can = |k: &str| t.get(k).and_then(Value::as_bool).unwrap_or(false);
        if matches!(mode, "heat" | "heat-cool") && !can("can_heat") {
            out.push(format!("{id}: mode {mode} without can_heat"));
        }
        if matches!(mode, "cool" | "heat-cool") && !can("can_cool") {
            out.push(format!("{id}: mode {mode} without can_cool"));
        }
        for (f, c) in TWINS {
            match (num(f), num(c)) {
                (Some(fv), Some(cv)) => {
                    if fv.fract() != 0.0 {
                        out.push(format!("{id}: {f}={fv} is not whole"));
                    }
                    if (cv * 2.0).fract() != 0.0 {
                        out.push(format!("{id}: {c}={cv} is not in 0.5 steps"));
                    }
                    if units::f_to_c(fv) != cv && units::c_to_f(cv) != fv {
                        out.push(format!("{id}: {f}={fv} and {c}={cv} disagree"));
                    }
                }
                (None, None) => {}
                _ => out.push(format!("{id}: only one of {f}, {c} present")),
            }
        }
        for (f, c) in &TWINS[..3] {
            if let Some(fv) = num(f).filter(|v| !(48.0..=90.0).contains(v)) {
                out.push(format!("{id}: {f}={fv} out of range"));
            }
            if let Some(cv) = num(c).filter(|v| !(9.0..=32.0).contains(v)) {
                out.push(format!("{id}: {c}={cv} out of range"));
            }
        }
        if let (Some(lo), Some(hi)) = (num("target_temperature_low_c"), num("target_temperature_high_c")) {
            // Whichever scale was written, the spread holds in at least that scale.
            let (lf, hf) = (
                num("target_temperature_low_f").unwrap_or(lo),
                num("target_temperature_high_f").unwrap_or(hi),
            );
            if hi - lo < config.min_spread_c && hf - lf < config.min_spread_f {
                out.push(format!("{id}: heat-cool spread too small ({lo}..{hi} C)"));
            }
        }
        let active = t.get("fan_timer_active").and_then(Value::as_bool).unwrap_or(false);
        let timeout = t.get("fan_timer_timeout").and_then(Value::as_str).unwrap_or(units::EPOCH);
        if active != (timeout != units::EPOCH) {
            out.push(format!("{id}: fan_timer_active={active} but fan_timer_timeout={timeout}"));
        }
        if active && !can("has_fan") {
            out.push(format!("{id}: fan running without a fan"));
        }
    }
    // Every stored field has a row and a value of its type.
    for kind in Entity::DEVICE_KINDS {
        for (id, d) in home.devices(kind) {
            for (k, v) in d {
                match schema::field(kind, k) {
                    None => out.push(format!("{id}: field {k} has no schema row")),
                    Some(spec) => {
                        if let FieldType::Enum(allowed) = spec.ty
                            && !v.as_str().is_some_and(|s| allowed.contains(&s))
                        {
                            out.push(format!("{id}: {k}={v} not allowed"));
                        }
                    }
                }
            }
        }
    }
    let s = home.structure();
    for (k, _) in s {
        if schema::field(Entity::Structure, k).is_none() {
            out.push(format!("structure: field {k} has no schema row"));
        }
    }
    if !s.get("away").and_then(Value::as_str).is_some_and(|a| schema::AWAY_STATES.contains(&a)) {
        out.push("structure: away is not home, away or unknown".into());
    }
    out
}
