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

/// What Home/Away Assist watches in a home that is `home` and has had a signal.
struct AssistWatch<'h> {
    /// The newer of the last signal and the last change of `away`.
    quiet_since: &'h str,
    changed_at: &'h str,
    /// A person set `away` last (their choice is held for a while).
    set_by_user: bool,
}

fn watch<'h>(home: &'h Home, config: &RuleConfig) -> Option<AssistWatch<'h>> {
    let s = home.structure();
    let text = |k: &str| s.get(k).and_then(Value::as_str);
    if !config.assist.enabled || text("away") != Some("home") {
        return None;
    }
    let presence = text("last_presence_at")?;
    let changed_at = text("away_changed_at").unwrap_or(EPOCH);
    let quiet_since = if presence > changed_at { presence } else { changed_at };
    Some(AssistWatch { quiet_since, changed_at, set_by_user: text("away_set_by") == Some("user") })
}

/// When a camera of the home last saw a person (the epoch if never).
fn last_person_at(home: &Home) -> &str {
    home.devices(Entity::Camera)
        .filter_map(|(_, c)| c.get("last_event"))
        .filter(|e| e.get("has_person").and_then(Value::as_bool) == Some(true))
        .filter_map(|e| e.get("start_time").and_then(Value::as_str))
        .max()
        .unwrap_or(EPOCH)
}

/// The writes due in `home` at `now` (empty almost always).
pub fn due(home: &Home, now: DateTime<Utc>, config: &RuleConfig) -> Vec<EntityWrite> {
    let now_text = units::format_time(now);
    let mut writes = Vec::new();
    let s = home.structure();
    let text = |k: &str| s.get(k).and_then(Value::as_str);
    let mut structure = Map::new();

    let assist = &config.assist;
    if let Some(AssistWatch { quiet_since, changed_at, set_by_user }) = watch(home, config) {
        let quiet = seconds_between(quiet_since, &now_text).is_some_and(|d| d >= assist.quiet_secs);
        let held =
            set_by_user && seconds_between(changed_at, &now_text).is_some_and(|d| d < assist.hold_secs);
        if quiet && !held {
            structure.insert("away".into(), Value::from("away"));
            structure.insert("away_set_by".into(), Value::from("assist"));
            structure.insert("away_changed_at".into(), Value::from(now_text.as_str()));
        }
    }

    if text("wwn_security_state") == Some("deter") {
        let last_person = last_person_at(home);
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

/// [`next_due`] as the store keeps it: Unix seconds, rounded up so that the clock looks no
/// earlier than the change is due.
pub fn next_due_secs(home: &Home, config: &RuleConfig) -> Option<i64> {
    next_due(home, config).map(|t| t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0))
}

/// The earliest time at which [`due`] has something to write for `home` as it stands, with
/// nothing else happening (`None`: nothing is pending). Stored with each commit, so that the
/// clock finds the homes it must look at without holding every home in memory.
pub fn next_due(home: &Home, config: &RuleConfig) -> Option<DateTime<Utc>> {
    let s = home.structure();
    let text = |k: &str| s.get(k).and_then(Value::as_str);
    let after = |t: &str, secs: i64| units::parse_time(t).map(|t| t + chrono::Duration::seconds(secs));
    let mut times: Vec<DateTime<Utc>> = Vec::new();

    let assist = &config.assist;
    if let Some(AssistWatch { quiet_since, changed_at, set_by_user }) = watch(home, config) {
        let quiet = after(quiet_since, assist.quiet_secs);
        let held_until = if set_by_user { after(changed_at, assist.hold_secs) } else { None };
        if let Some(quiet) = quiet {
            times.push(held_until.map_or(quiet, |held| quiet.max(held)));
        }
    }

    if text("wwn_security_state") == Some("deter") {
        times.extend(after(last_person_at(home), assist.security_quiet_secs));
    }

    for (_, t) in home.devices(Entity::Thermostat) {
        let timeout = t.get("fan_timer_timeout").and_then(Value::as_str).unwrap_or(EPOCH);
        if t.get("fan_timer_active").and_then(Value::as_bool) == Some(true) && timeout != EPOCH {
            times.extend(units::parse_time(timeout));
        }
    }
    times.into_iter().min()
}
