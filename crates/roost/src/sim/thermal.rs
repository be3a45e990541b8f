//! A thermostat's physics in the simulator: ambient temperature moving toward the target while
//! the HVAC runs and drifting toward the outside otherwise, with humidity, `hvac_state` and
//! `time_to_target` following.

use serde_json::{Map, Value};

use super::Rng;

/// A thermostat's physical state.
#[derive(Debug, Default)]
pub(super) struct Model {
    ambient_f: Option<f64>,
    humidity: Option<f64>,
    hvac_state: String,
    time_to_target: String,
    pub(super) acknowledged_version: u64,
}

/// °F per simulated minute while the HVAC runs, and the drift rate toward outside.
const HVAC_RATE_F_PER_MIN: f64 = 0.5;
const DRIFT_PER_MIN: f64 = 0.01;

impl Model {
    pub(super) fn thermostat(
        &mut self,
        intended: &Map<String, Value>,
        outside: f64,
        dt_secs: f64,
        rng: &mut Rng,
    ) {
        let num = |k: &str| intended.get(k).and_then(Value::as_f64);
        let mut ambient = self.ambient_f.or_else(|| num("ambient_temperature_f")).unwrap_or(68.0);
        let mut humidity = self.humidity.or_else(|| num("humidity")).unwrap_or(40.0);
        let mode = intended.get("hvac_mode").and_then(Value::as_str).unwrap_or("off");
        let (low, high) = match mode {
            "heat" => (num("target_temperature_f"), None),
            "cool" => (None, num("target_temperature_f")),
            "heat-cool" => (num("target_temperature_low_f"), num("target_temperature_high_f")),
            "eco" => (num("eco_temperature_low_f"), num("eco_temperature_high_f")),
            _ => (None, None),
        };
        let minutes = dt_secs / 60.0;
        let (state, target) = match (low, high) {
            (Some(l), _) if ambient < l - 0.3 => ("heating", Some(l)),
            (_, Some(h)) if ambient > h + 0.3 => ("cooling", Some(h)),
            _ => ("off", None),
        };
        match (state, target) {
            ("heating", Some(t)) => ambient = (ambient + HVAC_RATE_F_PER_MIN * minutes).min(t),
            ("cooling", Some(t)) => ambient = (ambient - HVAC_RATE_F_PER_MIN * minutes).max(t),
            _ => ambient += (outside - ambient) * (DRIFT_PER_MIN * minutes).min(1.0),
        }
        humidity = (humidity + (rng.unit() - 0.5) * 0.2 * minutes.min(10.0)).clamp(20.0, 70.0);
        self.time_to_target = match target {
            Some(t) => format!("~{}", ((t - ambient).abs() / HVAC_RATE_F_PER_MIN).ceil().max(0.0) as i64),
            None => "~0".into(),
        };
        self.hvac_state = state.into();
        self.ambient_f = Some(ambient);
        self.humidity = Some(humidity);
    }

    pub(super) fn thermostat_report(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if let Some(a) = self.ambient_f {
            out.push(("ambient_temperature_f".into(), Value::from(a.round() as i64)));
        }
        if let Some(h) = self.humidity {
            out.push(("humidity".into(), Value::from(((h / 5.0).round() * 5.0) as i64)));
        }
        out.push(("hvac_state".into(), Value::from(self.hvac_state.clone())));
        out.push(("time_to_target".into(), Value::from(self.time_to_target.clone())));
        out
    }
}
