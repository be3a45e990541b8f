//! Home/Away Assist and the other reactions to time passing: the writes the service makes
//! when nothing else happens.
//!
//! Policy (docs/devices.md has the long form):
//! - **Signals**: motion from a thermostat's or Protect's occupancy sensor (`last_motion_at`),
//!   a camera's motion or person event, and phones through the presence endpoint. The newest
//!   is the structure's `last_presence_at` (home logic keeps it).
//! - **Away**: a `home` structure with at least one signal ever and none for `quiet_secs`
//!   turns `away` (`away_set_by: assist`), unless a person set `away` within `hold_secs`.
//! - **Home**: a signal newer than the `away` brings the home back at once (home logic, as the
//!   signal is written), unless a person set that `away` within `hold_secs`.
//! - Away puts thermostats in eco and home restores them (home logic, `eco_on_away`).
//! - **Security**: `deter` relaxes to `ok` after `security_quiet_secs` without a person event
//!   (and at once on `home`, home logic).
//! - **Fan timers** that ran out turn off.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::context::RuleConfig;
use crate::home::Home;
use crate::logic::seconds_between;
use crate::schema::Entity;
use crate::units::{self, EPOCH};
use crate::write::{EntityWrite, Target};

/// The writes due in `home` at `now` (empty almost always).
pub fn due(home: &Home, now: DateTime<Utc>, config: &RuleConfig) -> Vec<EntityWrite> {
    let now_text = units::format_time(now);
    let mut writes = Vec::new();
    let s = home.structure();
    let text = |k: &str| s.get(k).and_then(Value::as_str);
    let mut structure = Map::new();

    let assist = &config.assist;
    if assist.enabled
        && text("away") == Some("home")
        && let Some(presence) = text("last_presence_at")
    {
        let changed_at = text("away_changed_at").unwrap_or(EPOCH);
        let quiet_since = if presence > changed_at { presence } else { changed_at };
        let quiet = seconds_between(quiet_since, &now_text).is_some_and(|d| d >= assist.quiet_secs);
        let held = text("away_set_by") == Some("user")
            && seconds_between(changed_at, &now_text).is_some_and(|d| d < assist.hold_secs);
        if quiet && !held {
            structure.insert("away".into(), Value::from("away"));
            structure.insert("away_set_by".into(), Value::from("assist"));
            structure.insert("away_changed_at".into(), Value::from(now_text.as_str()));
        }
    }

    if text("wwn_security_state") == Some("deter") {
        let last_person = home
            .devices(Entity::Camera)
            .filter_map(|(_, c)| c.get("last_event"))
            .filter(|e| e.get("has_person").and_then(Value::as_bool) == Some(true))
            .filter_map(|e| e.get("start_time").and_then(Value::as_str))
            .max()
            .unwrap_or(EPOCH);
        if seconds_between(last_person, &now_text).is_some_and(|d| d >= assist.security_quiet_secs) {
            structure.insert("wwn_security_state".into(), Value::from("ok"));
        }
    }
    if !structure.is_empty() {
        writes.push(EntityWrite { target: Target::Structure, fields: structure.into() });
    }

    for (id, t) in home.devices(Entity::Thermostat) {
        let timeout = t.get("fan_timer_timeout").and_then(Value::as_str).unwrap_or(EPOCH);
        if t.get("fan_timer_active").and_then(Value::as_bool) == Some(true)
            && timeout != EPOCH
            && timeout <= now_text.as_str()
        {
            let mut fields = Map::new();
            fields.insert("fan_timer_active".into(), Value::from(false));
            writes.push(EntityWrite {
                target: Target::Device(Entity::Thermostat, id.clone()),
                fields: fields.into(),
            });
        }
    }
    writes
}
