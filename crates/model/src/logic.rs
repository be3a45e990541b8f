//! Home logic: the service's own reactions that keep a home consistent after every change.
//!
//! [`settle`] runs every derivation until nothing changes (a fixed point; each derivation is
//! idempotent and the set is bounded: a write that leaves the structure's derived fields alone
//! takes one pass, others two or three — [`MAX_PASSES`] caps it):
//!
//! - ids: each device's `device_id` and `structure_id` match where it is stored;
//! - where names: `where_name` from the structure's `wheres`;
//! - names: `name` = where name + ` (label)`, `name_long` = where name + kind + ` (label)`;
//! - temperatures: both scales present (a missing twin is derived from the other scale);
//!   deprecated `away_temperature_*` mirror `eco_temperature_*`;
//! - eco: entering `eco` remembers the mode left in `previous_hvac_mode`;
//! - away: a structure turning `away` puts its heating or cooling thermostats in eco; turning
//!   `home` restores `previous_hvac_mode` (setting `eco_on_away`);
//! - fan timer: an expired timer turns off;
//! - Protects: `ui_color_state` from battery, alarms and connection;
//! - roll-ups: structure device lists, product data lists, `co_alarm_state` and
//!   `smoke_alarm_state` (the worst of the Protects);
//! - ETA: `eta_begin` from the active trip;
//! - security: `wwn_security_state` is `deter` when the structure is away and an online,
//!   streaming camera reports a new person event; `home` makes it `ok`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::context::{Actor, WriteContext};
use crate::fields::FieldMap;
use crate::home::{Fields, Home};
use crate::schema::Entity;
use crate::schema::TWINS;
use crate::units::{self, EPOCH};

pub const MAX_PASSES: usize = 8;

/// Brings `next` (the home after a write to `prev`) to a consistent state. Device-level
/// derivations look at the devices the write changed (all of them when the structure
/// changed); [`settle_all`] looks at every device.
pub fn settle(prev: &Home, next: &mut Home, ctx: &WriteContext<'_>) {
    run(prev, next, ctx, false);
}

/// [`settle`] over every device, changed or not: for homes built or edited outside a write
/// (the demo, admin commands) and for time-driven reactions such as fan timers running out.
pub fn settle_all(prev: &Home, next: &mut Home, ctx: &WriteContext<'_>) {
    run(prev, next, ctx, true);
}

fn run(prev: &Home, next: &mut Home, ctx: &WriteContext<'_>, all: bool) {
    let now = units::format_time(ctx.now);
    for _ in 0..MAX_PASSES {
        let mut p = Pass::default();
        pass(&mut p, prev, next, ctx, all, &now);
        // A device's derivations, run in order, leave nothing for a second run (each reads
        // only what comes before it or what it sets itself), so a later pass repeats them only
        // if they read something new: the structure. The structure's steps run after the
        // devices' in the same pass, so they have seen every device change already: unless
        // they changed the structure, another pass would find nothing.
        if !p.changed || !(p.structure_changed || reference::every_pass()) {
            return;
        }
    }
}

/// Tests compare [`run`] with the plain fixed point that derives the changed devices in every
/// pass: the shortcut must never change an answer.
#[cfg(test)]
pub(crate) mod reference {
    use std::cell::Cell;

    thread_local!(static EVERY_PASS: Cell<bool> = const { Cell::new(false) });

    pub fn every_pass() -> bool {
        EVERY_PASS.with(Cell::get)
    }

    /// Runs `f` with every pass deriving the changed devices.
    pub fn with_every_pass<T>(f: impl FnOnce() -> T) -> T {
        EVERY_PASS.with(|c| c.set(true));
        let out = f();
        EVERY_PASS.with(|c| c.set(false));
        out
    }
}

#[cfg(not(test))]
mod reference {
    pub fn every_pass() -> bool {
        false
    }
}

/// One pass's record of whether it changed anything (cheaper than comparing homes).
#[derive(Default)]
struct Pass {
    changed: bool,
    /// The structure changed in this pass (its devices' derivations read it).
    structure_changed: bool,
}

impl Pass {
    /// Sets a field, copying a shared element only when the value really changes.
    fn set(&mut self, m: &mut Fields, k: &str, v: Value) {
        if m.get(k) != Some(&v) {
            Arc::make_mut(m).insert(k.to_string(), v);
            self.changed = true;
        }
    }
}

/// One pass of every derivation: the devices' own (those the write changed, or every one if
/// `all` or if the structure changed), then the structure's.
fn pass(p: &mut Pass, prev: &Home, next: &mut Home, ctx: &WriteContext<'_>, all: bool, now: &str) {
    let sid = next.id().to_string();
    // A shared handle on the structure, so devices can change while it is read.
    let structure = next.structure_fields_mut().clone();
    let structure_changed = !Arc::ptr_eq(&structure, &prev.structure_fields());
    let empty = Map::new();
    let wheres = structure.get("wheres").and_then(Value::as_object).unwrap_or(&empty);
    let away_now = structure.get("away").and_then(Value::as_str).unwrap_or("home");
    let away_before = prev.structure().get("away").and_then(Value::as_str).unwrap_or("home");
    let away_changed = away_now != away_before;

    for kind in Entity::DEVICE_KINDS {
        let ids: Vec<String> = next
            .devices(kind)
            .filter(|(id, _)| all || structure_changed || !next.shares_device(prev, kind, id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let before = prev.device(kind, &id);
            let Some(d) = next.device_fields_mut(kind, &id) else {
                continue;
            };
            if d.get("device_id").and_then(Value::as_str) != Some(&id) {
                p.set(d, "device_id", Value::from(id.as_str()));
            }
            if d.get("structure_id").and_then(Value::as_str) != Some(&sid) {
                p.set(d, "structure_id", Value::from(sid.as_str()));
            }
            if let Some(name) = d
                .get("where_id")
                .and_then(Value::as_str)
                .and_then(|w| wheres.get(w))
                .and_then(|w| w.get("name"))
            {
                p.set(d, "where_name", name.clone());
            }
            derive_names(p, kind, d);
            match kind {
                Entity::Thermostat => {
                    thermostat(p, d, before, away_changed, away_now, ctx.config.eco_on_away, now)
                }
                Entity::SmokeCoAlarm => protect_color(p, d),
                _ => {}
            }
            // Last: it counts changes of intended fields, which the steps above may make.
            sync(p, kind, &id, d, before, ctx);
        }
    }

    let devices_changed = p.changed;
    p.changed = false;
    roll_up(p, next, all || !next.shares_products(prev));
    eta_begin(p, next);
    if all || structure_changed || signals_changed(prev, next) {
        presence(p, prev, next, ctx, now);
    }
    away_bookkeeping(p, prev, next, ctx, now);
    // `away` may have changed in this pass; security judges the newest value.
    let away_now = next.structure().get("away").and_then(Value::as_str).unwrap_or("home").to_string();
    security(p, prev, next, away_now != away_before, &away_now);
    // Every step after the devices' writes only the structure.
    p.structure_changed = p.changed;
    p.changed |= devices_changed;
}

/// Intended vs reported: `intended_version` counts changes of the device's intended fields
/// (whoever made them: a product, home logic, the device's own dial); `applied_version` is
/// the newest one the device says it applied (a change made at the device is applied by
/// definition; versions never go back); `sync_state` is `pending` until they meet.
fn sync(
    p: &mut Pass,
    kind: Entity,
    id: &str,
    d: &mut Fields,
    before: Option<&FieldMap>,
    ctx: &WriteContext<'_>,
) {
    let version = |m: &FieldMap, k: &str| m.get(k).and_then(Value::as_u64);
    let before_intended = before.and_then(|b| version(b, "intended_version")).unwrap_or(0);
    let changed =
        before.is_some_and(|b| crate::schema::intended_fields(kind).iter().any(|f| b.get(f) != d.get(f)));
    let intended =
        if changed { before_intended + 1 } else { version(d, "intended_version").unwrap_or(before_intended) };
    let by_itself = matches!(ctx.actor, Actor::Device { device_id } if device_id == id);
    let before_applied = before.and_then(|b| version(b, "applied_version")).unwrap_or(0);
    let mut applied = version(d, "applied_version").unwrap_or(0).max(before_applied);
    if changed && by_itself {
        applied = intended;
    }
    let applied = applied.min(intended);
    p.set(d, "intended_version", Value::from(intended));
    p.set(d, "applied_version", Value::from(applied));
    p.set(d, "sync_state", Value::from(if applied >= intended { "synced" } else { "pending" }));
}

/// Occupancy signals: the newest motion of a device's occupancy sensor or camera (motion or
/// person event) raises the structure's `last_presence_at` (phones raise it through the
/// presence endpoint). With Home/Away Assist on, a signal newer than the home's `away` brings
/// it back `home` — unless a person set that `away` within the hold time. A camera alone never
/// brings a home back: a person at the camera of an empty home is what `deter` is for.
fn presence(p: &mut Pass, prev: &Home, next: &mut Home, ctx: &WriteContext<'_>, now: &str) {
    fn newer(a: Option<String>, b: Option<&str>) -> Option<String> {
        match (a, b) {
            (Some(a), Some(b)) if b > a.as_str() => Some(b.to_string()),
            (None, Some(b)) => Some(b.to_string()),
            (a, _) => a,
        }
    }
    let mut inside: Option<String> = None;
    for kind in [Entity::Thermostat, Entity::SmokeCoAlarm] {
        for (_, d) in next.devices(kind) {
            inside = newer(inside, d.get("last_motion_at").and_then(Value::as_str));
        }
    }
    let mut camera: Option<String> = None;
    for (_, c) in next.devices(Entity::Camera) {
        if let Some(e) = c.get("last_event") {
            let flag = |k: &str| e.get(k).and_then(Value::as_bool).unwrap_or(false);
            if flag("has_motion") || flag("has_person") {
                camera = newer(camera, e.get("start_time").and_then(Value::as_str));
            }
        }
    }
    let text = |m: &FieldMap, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let s = next.structure_fields_mut();
    let newest = newer(inside, camera.as_deref());
    if let Some(t) = newest.filter(|t| text(s, "last_presence_at").is_none_or(|c| t.as_str() > c.as_str()))
        && t.as_str() <= now
    {
        p.set(s, "last_presence_at", Value::from(t));
    }
    let assist = &ctx.config.assist;
    let presence = text(s, "last_presence_at");
    let arrived = presence != text(prev.structure(), "last_presence_at") && presence != camera;
    let away_at = text(s, "away_changed_at").unwrap_or_else(|| EPOCH.to_string());
    if assist.enabled
        && arrived
        && text(s, "away").as_deref() == Some("away")
        && presence.as_deref().is_some_and(|t| t > away_at.as_str())
    {
        let held = text(s, "away_set_by").as_deref() == Some("user")
            && seconds_between(&away_at, now).is_some_and(|d| d < assist.hold_secs);
        if !held {
            p.set(s, "away", Value::from("home"));
            p.set(s, "away_set_by", Value::from("assist"));
            p.set(s, "away_changed_at", Value::from(now));
        }
    }
}

/// Whether a device's occupancy signal changed (most writes leave them alone, and
/// [`presence`] looks at every device).
fn signals_changed(prev: &Home, next: &Home) -> bool {
    [Entity::Thermostat, Entity::SmokeCoAlarm, Entity::Camera].into_iter().any(|kind| {
        next.devices(kind).any(|(id, d)| {
            !next.shares_device(prev, kind, id) && {
                let before = prev.device(kind, id);
                ["last_motion_at", "last_event"].iter().any(|k| before.and_then(|b| b.get(k)) != d.get(k))
            }
        })
    })
}

/// Who changed `away` and when, unless the change already says so (Home/Away Assist writes
/// all three fields).
fn away_bookkeeping(p: &mut Pass, prev: &Home, next: &mut Home, ctx: &WriteContext<'_>, now: &str) {
    let before = prev.structure();
    let s = next.structure_fields_mut();
    if s.get("away") == before.get("away") || s.get("away_changed_at") != before.get("away_changed_at") {
        return;
    }
    let who = if matches!(ctx.actor, Actor::Service) { "service" } else { "user" };
    p.set(s, "away_set_by", Value::from(who));
    p.set(s, "away_changed_at", Value::from(now));
}

/// Seconds from `a` to `b` (ISO 8601 times); `None` if either does not parse.
pub fn seconds_between(a: &str, b: &str) -> Option<i64> {
    Some((units::parse_time(b)? - units::parse_time(a)?).num_seconds())
}

fn derive_names(p: &mut Pass, kind: Entity, d: &mut Fields) {
    let Some(where_name) = d.get("where_name").and_then(Value::as_str) else {
        return;
    };
    let label = d.get("label").and_then(Value::as_str).unwrap_or("").trim();
    let word = kind.long_name_word();
    // Compared piece by piece: most writes leave the names as they are, with no string built.
    let is = |key: &str, pieces: &[&str]| {
        let mut rest = d.get(key).and_then(Value::as_str).unwrap_or_default();
        pieces.iter().all(|piece| rest.strip_prefix(piece).map(|r| rest = r).is_some()) && rest.is_empty()
    };
    let (name_ok, long_ok) = if label.is_empty() {
        (is("name", &[where_name]), is("name_long", &[where_name, " ", word]))
    } else {
        (
            is("name", &[where_name, " (", label, ")"]),
            is("name_long", &[where_name, " ", word, " (", label, ")"]),
        )
    };
    if name_ok && long_ok {
        return;
    }
    let suffix = if label.is_empty() { String::new() } else { format!(" ({label})") };
    let (name, name_long) = (format!("{where_name}{suffix}"), format!("{where_name} {word}{suffix}"));
    p.set(d, "name", Value::from(name));
    p.set(d, "name_long", Value::from(name_long));
}

fn thermostat(
    p: &mut Pass,
    d: &mut Fields,
    before: Option<&FieldMap>,
    away_changed: bool,
    away_now: &str,
    eco_on_away: bool,
    now: &str,
) {
    // Both scales present.
    for (f, c) in TWINS {
        match (d.get(f).and_then(Value::as_f64), d.get(c).and_then(Value::as_f64)) {
            (Some(fv), None) => p.set(d, c, units::c_json(units::f_to_c(fv))),
            (None, Some(cv)) => p.set(d, f, units::f_json(units::c_to_f(cv))),
            _ => {}
        }
    }
    for (eco, away) in [
        ("eco_temperature_high_f", "away_temperature_high_f"),
        ("eco_temperature_high_c", "away_temperature_high_c"),
        ("eco_temperature_low_f", "away_temperature_low_f"),
        ("eco_temperature_low_c", "away_temperature_low_c"),
    ] {
        if let Some(v) = d.get(eco).cloned() {
            p.set(d, away, v);
        }
    }

    // Away puts heating/cooling thermostats in eco; home restores them.
    let mode = d.get("hvac_mode").and_then(Value::as_str).unwrap_or("off").to_string();
    if away_changed && eco_on_away {
        if away_now == "away" && !matches!(mode.as_str(), "eco" | "off") {
            p.set(d, "hvac_mode", Value::from("eco"));
        } else if away_now == "home" && mode == "eco" {
            let prev_mode = d.get("previous_hvac_mode").and_then(Value::as_str).unwrap_or("").to_string();
            if !prev_mode.is_empty() && prev_mode != "eco" {
                p.set(d, "hvac_mode", Value::from(prev_mode));
            }
        }
    }

    // Entering eco remembers the mode left.
    let mode = d.get("hvac_mode").and_then(Value::as_str).unwrap_or("off").to_string();
    let old_mode = before.and_then(|b| b.get("hvac_mode")).and_then(Value::as_str).unwrap_or("");
    if mode == "eco" && !old_mode.is_empty() && old_mode != "eco" {
        p.set(d, "previous_hvac_mode", Value::from(old_mode));
    }
    if !d.contains_key("previous_hvac_mode") {
        p.set(d, "previous_hvac_mode", Value::from(""));
    }

    // An expired fan timer turns off.
    if d.get("fan_timer_active").and_then(Value::as_bool) == Some(true) {
        let timeout = d.get("fan_timer_timeout").and_then(Value::as_str).unwrap_or(EPOCH);
        if timeout != EPOCH && timeout <= now {
            p.set(d, "fan_timer_active", Value::from(false));
            p.set(d, "fan_timer_timeout", Value::from(EPOCH));
        }
    } else if d.contains_key("fan_timer_active") {
        p.set(d, "fan_timer_timeout", Value::from(EPOCH));
    }
}

fn protect_color(p: &mut Pass, d: &mut Fields) {
    let state = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("ok").to_string();
    let (co, smoke, battery) = (state("co_alarm_state"), state("smoke_alarm_state"), state("battery_health"));
    let online = d.get("is_online").and_then(Value::as_bool).unwrap_or(true);
    let color = if co == "emergency" || smoke == "emergency" {
        "red"
    } else if co == "warning" || smoke == "warning" || battery == "replace" {
        "yellow"
    } else if !online {
        "gray"
    } else {
        "green"
    };
    p.set(d, "ui_color_state", Value::from(color));
}

fn severity(s: &str) -> u8 {
    match s {
        "emergency" => 2,
        "warning" => 1,
        _ => 0,
    }
}

/// `products_changed`: the product data may differ from the settled home's (its roll-up is
/// rebuilt only then).
fn roll_up(p: &mut Pass, home: &mut Home, products_changed: bool) {
    // Lists are rebuilt only when they differ (devices come and go rarely).
    let mut lists = Vec::new();
    for kind in Entity::DEVICE_KINDS {
        let key = kind.collection().unwrap_or_default();
        let listed = home.structure().get(key).and_then(Value::as_array);
        let same = match listed {
            Some(listed) => {
                listed.iter().map(Value::as_str).eq(home.devices(kind).map(|(id, _)| Some(id.as_str())))
            }
            None => home.devices(kind).next().is_none(),
        };
        if !same {
            lists.push((key, home.devices(kind).map(|(id, _)| Value::from(id.as_str())).collect::<Vec<_>>()));
        }
    }
    let worst = |key: &str| {
        home.devices(Entity::SmokeCoAlarm)
            .map(|(_, p)| p.get(key).and_then(Value::as_str).unwrap_or("ok"))
            .max_by_key(|s| severity(s))
            .unwrap_or("ok")
            .to_string()
    };
    let co = worst("co_alarm_state");
    let smoke = worst("smoke_alarm_state");
    let products = products_changed.then(|| {
        let mut products = Map::new();
        for (company, ty, id, _) in home.product_data() {
            let types = crate::home::object_entry(&mut products, &company);
            let slot = types.entry(ty).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = slot {
                a.push(Value::from(id));
            }
        }
        products
    });
    let s = home.structure_fields_mut();
    for (key, ids) in lists {
        if ids.is_empty() {
            if s.contains_key(key) {
                Arc::make_mut(s).remove(key);
                p.changed = true;
            }
        } else {
            p.set(s, key, Value::Array(ids));
        }
    }
    if let Some(products) = products {
        p.set(s, "devices", Value::Object(products));
    }
    p.set(s, "co_alarm_state", Value::from(co));
    p.set(s, "smoke_alarm_state", Value::from(smoke));
}

fn eta_begin(p: &mut Pass, home: &mut Home) {
    let s = home.structure_fields_mut();
    let begin = s
        .get("eta")
        .and_then(|e| e.get("estimated_arrival_window_begin"))
        .cloned()
        .unwrap_or_else(|| Value::from(EPOCH));
    p.set(s, "eta_begin", begin);
}

fn security(p: &mut Pass, prev: &Home, next: &mut Home, away_changed: bool, away_now: &str) {
    let current =
        next.structure().get("wwn_security_state").and_then(Value::as_str).unwrap_or("ok").to_string();
    let state = if away_now != "away" {
        "ok".to_string()
    } else {
        let new_person = next.devices(Entity::Camera).any(|(id, c)| {
            let online = c.get("is_online").and_then(Value::as_bool).unwrap_or(false);
            let streaming = c.get("is_streaming").and_then(Value::as_bool).unwrap_or(false);
            let event = c.get("last_event");
            let person = event.and_then(|e| e.get("has_person")).and_then(Value::as_bool).unwrap_or(false);
            let was = prev.device(Entity::Camera, id).and_then(|p| p.get("last_event"));
            online && streaming && person && (event != was || away_changed)
        });
        if new_person { "deter".to_string() } else { current }
    };
    p.set(next.structure_fields_mut(), "wwn_security_state", Value::from(state));
}
