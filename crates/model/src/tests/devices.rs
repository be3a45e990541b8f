//! The device side of the model: intended vs reported state, late and repeated reports,
//! Home/Away Assist and the other time-driven reactions, with controlled time.

use chrono::Duration;
use serde_json::{Value, json};

use super::*;
use crate::assist;
use crate::write::{EntityWrite, Target, WritePlan, drop_stale_reports};

fn device(id: &str) -> Actor {
    Actor::Device { device_id: id.into() }
}

fn at(minutes: i64) -> DateTime<Utc> {
    now() + Duration::minutes(minutes)
}

fn hp(h: &Home, field: &str) -> Value {
    thermostat(h, HP).get(field).cloned().unwrap_or(Value::Null)
}

fn structure(h: &Home, field: &str) -> Value {
    h.structure().get(field).cloned().unwrap_or(Value::Null)
}

fn path(id: &str) -> String {
    format!("/devices/thermostats/{id}")
}

/// A device report at `now`, measured at `measured`; returns the home and the dropped fields.
fn report(h: &Home, id: &str, body: Value, measured: DateTime<Utc>) -> (Home, Vec<String>) {
    let actor = device(id);
    let loc = Location::parse(&path(id)).unwrap();
    let mut plan = plan_write(&loc, &body, [h]).unwrap();
    let config = RuleConfig::default();
    let ctx = WriteContext { actor: &actor, now: now(), config: &config, measured_at: Some(measured) };
    let dropped = drop_stale_reports(&mut plan, h, &ctx);
    (apply_write(h, &plan, &ctx).unwrap(), dropped)
}

/// Applies what [`assist::due`] says at `t`, as the server's tick does; and checks that
/// [`assist::next_due`] agrees: something is due at `t` exactly when the next due time has come.
fn tick(h: &Home, t: DateTime<Utc>) -> Home {
    let writes = assist::due(h, t, &RuleConfig::default());
    let next = assist::next_due(h, &RuleConfig::default());
    assert_eq!(!writes.is_empty(), next.is_some_and(|n| n <= t), "due at {t}: {writes:?}, next due {next:?}");
    if writes.is_empty() {
        return h.clone();
    }
    let plan = WritePlan { structure_id: SID.into(), writes };
    let config = RuleConfig::default();
    apply_write(h, &plan, &WriteContext::new(&Actor::Service, t, &config)).unwrap()
}

#[test]
fn a_product_change_is_pending_until_the_device_applies_it() {
    let h = demo();
    assert_eq!((hp(&h, "sync_state"), hp(&h, "intended_version")), (json!("synced"), json!(1)));
    let h = write(&h, &all(), &path(HP), json!({"target_temperature_f": 74})).unwrap();
    assert_eq!(
        (hp(&h, "sync_state"), hp(&h, "intended_version"), hp(&h, "applied_version")),
        (json!("pending"), json!(2), json!(1))
    );
    // A report without the version leaves it pending.
    let h = write(&h, &device(HP), &path(HP), json!({"ambient_temperature_f": 69})).unwrap();
    assert_eq!(hp(&h, "sync_state"), json!("pending"));
    // A second change before the device caught up: still one step at a time.
    let h = write(&h, &all(), &path(HP), json!({"target_temperature_f": 75})).unwrap();
    assert_eq!(hp(&h, "intended_version"), json!(3));
    let h2 = write(&h, &device(HP), &path(HP), json!({"applied_version": 2})).unwrap();
    assert_eq!(hp(&h2, "sync_state"), json!("pending"));
    let h3 = write(&h2, &device(HP), &path(HP), json!({"applied_version": 3})).unwrap();
    assert_eq!((hp(&h3, "sync_state"), hp(&h3, "applied_version")), (json!("synced"), json!(3)));
    // A late acknowledgement never moves the version back.
    let h4 = write(&h3, &device(HP), &path(HP), json!({"applied_version": 2})).unwrap();
    assert_eq!(hp(&h4, "applied_version"), json!(3));
    // Reported fields do not touch the intended version.
    let h5 = write(&h4, &device(HP), &path(HP), json!({"humidity": 41, "hvac_state": "heating"})).unwrap();
    assert_eq!((hp(&h5, "intended_version"), hp(&h5, "sync_state")), (json!(3), json!("synced")));
}

#[test]
fn an_acknowledgement_ahead_of_the_intent_is_refused() {
    let h = demo();
    assert_eq!(
        err(write(&h, &device(HP), &path(HP), json!({"applied_version": 9}))),
        json!({
            "error": "applied_version 9 is ahead of intended_version 1",
            "message": "applied_version 9 is ahead of intended_version 1",
            "type": ty("applied-ahead"),
            "details": {"applied_version": "9", "intended_version": "1"},
            "kind": "invalid"
        })
    );
}

#[test]
fn a_change_at_the_dial_is_intended_and_already_applied() {
    let h = demo();
    let h = write(&h, &device(HP), &path(HP), json!({"target_temperature_f": 66})).unwrap();
    assert_eq!(
        (hp(&h, "intended_version"), hp(&h, "applied_version"), hp(&h, "sync_state")),
        (json!(2), json!(2), json!("synced"))
    );
    assert_eq!(hp(&h, "target_temperature_c").as_f64(), Some(19.0));
    // The dial passes the same safety rules: no cooling on emergency heat.
    let h = service(&h, &path(HP), json!({"is_using_emergency_heat": true}));
    let e = err(write(&h, &device(HP), &path(HP), json!({"hvac_mode": "cool"})));
    assert_eq!(e["error"], json!("Cannot change HVAC mode to cool while emergency heat is on"));
}

#[test]
fn devices_write_only_themselves_and_products_never_write_reports() {
    let h = demo();
    // Another device's fields (refused as a product's unwritable fields are).
    let e = err(write(&h, &device(HO), &path(HP), json!({"ambient_temperature_f": 60})));
    assert_eq!(e["kind"], json!("invalid"));
    assert_eq!(e["error"], json!("No write permission(s) for field(s): ambient_temperature_f"));
    // Service-kept fields.
    let e = err(write(&h, &device(HP), &path(HP), json!({"is_online": false})));
    assert_eq!(e["kind"], json!("invalid"));
    let e = err(write(&h, &device(HP), &path(HP), json!({"intended_version": 5})));
    assert_eq!(e["kind"], json!("invalid"));
    // The structure.
    let e = err(write(&h, &device(HP), &format!("/structures/{SID}"), json!({"away": "away"})));
    assert_eq!(e["kind"], json!("invalid"));
    // A product writing a measurement.
    let e = err(write(&h, &all(), &path(HP), json!({"ambient_temperature_f": 60})));
    assert_eq!(e["kind"], json!("invalid"));
}

#[test]
fn a_late_report_never_overwrites_a_newer_one() {
    let h = demo();
    let (h, dropped) = report(&h, HP, json!({"ambient_temperature_f": 70, "humidity": 40}), at(-1));
    assert!(dropped.is_empty());
    // Measured earlier than what is stored: the temperature is left out, the rest applies.
    let (h2, dropped) = report(&h, HP, json!({"ambient_temperature_f": 60, "hvac_state": "heating"}), at(-3));
    assert_eq!(dropped, vec![format!("/devices/thermostats/{HP}/ambient_temperature_f")]);
    assert_eq!((hp(&h2, "ambient_temperature_f"), hp(&h2, "hvac_state")), (json!(70), json!("heating")));
    // A clock ahead of the service's counts as now, so it cannot block later reports.
    let (h3, _) = report(&h2, HP, json!({"humidity": 45}), at(60));
    let (h4, dropped) = report(&h3, HP, json!({"humidity": 46}), now());
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(hp(&h4, "humidity"), json!(46));
    // Measurement times are internal: no view shows them.
    let view = Value::Object(crate::filter_home(&h4, PermissionSet::all())).to_string();
    assert!(!view.contains("reported_at"));
}

#[test]
fn quiet_turns_the_home_away_and_motion_brings_it_back() {
    let h = demo();
    // The demo's camera saw motion 5 minutes ago.
    assert_eq!(structure(&h, "last_presence_at"), json!("2026-11-27T11:55:00.000Z"));
    assert_eq!(tick(&h, at(60)), h, "not quiet long enough");
    let away = tick(&h, at(125));
    assert_eq!((structure(&away, "away"), structure(&away, "away_set_by")), (json!("away"), json!("assist")));
    assert_eq!(hp(&away, "hvac_mode"), json!("eco"));
    assert_eq!(hp(&away, "sync_state"), json!("pending"), "the thermostat must apply eco");
    // Motion at the thermostat's sensor: home, previous mode restored.
    let back = write_at(
        &away,
        &device(HP),
        &path(HP),
        json!({"last_motion_at": "2026-11-27T14:10:00.000Z"}),
        at(131),
    )
    .unwrap();
    assert_eq!((structure(&back, "away"), structure(&back, "away_set_by")), (json!("home"), json!("assist")));
    assert_eq!(structure(&back, "last_presence_at"), json!("2026-11-27T14:10:00.000Z"));
    assert_eq!(hp(&back, "hvac_mode"), hp(&h, "hvac_mode"));
}

#[test]
fn a_persons_own_choice_is_held() {
    let h = demo();
    // Someone says "away" although there was motion: motion right after does not undo it.
    let away = write_at(&h, &all(), &format!("/structures/{SID}"), json!({"away": "away"}), at(0)).unwrap();
    assert_eq!(structure(&away, "away_set_by"), json!("user"));
    let moved = write_at(
        &away,
        &device(HP),
        &path(HP),
        json!({"last_motion_at": "2026-11-27T12:10:00.000Z"}),
        at(10),
    )
    .unwrap();
    assert_eq!(structure(&moved, "away"), json!("away"), "held for an hour");
    // After the hold, new motion brings it home.
    let later = write_at(
        &moved,
        &device(HP),
        &path(HP),
        json!({"last_motion_at": "2026-11-27T13:30:00.000Z"}),
        at(90),
    )
    .unwrap();
    assert_eq!(structure(&later, "away"), json!("home"));
    // Someone says "home" and leaves: quiet does not override it within the hold either.
    let home = write_at(&h, &all(), &format!("/structures/{SID}"), json!({"away": "home"}), at(0));
    let home = home.unwrap();
    let h2 = write_at(&home, &all(), &format!("/structures/{SID}"), json!({"away": "away"}), at(1)).unwrap();
    let h3 = write_at(&h2, &all(), &format!("/structures/{SID}"), json!({"away": "home"}), at(200)).unwrap();
    assert_eq!(tick(&h3, at(230)), h3, "a manual home is held");
    assert_eq!(structure(&tick(&h3, at(400)), "away"), json!("away"));
}

#[test]
fn no_signal_ever_means_no_assist() {
    let mut h = demo();
    h.structure_mut().remove("last_presence_at");
    let mut cams: Vec<String> = h.devices(Entity::Camera).map(|(id, _)| id.clone()).collect();
    for id in cams.drain(..) {
        h.device_mut(Entity::Camera, &id).unwrap().remove("last_event");
    }
    assert_eq!(tick(&h, at(60 * 24)), h);
}

#[test]
fn a_person_while_away_deters_and_quiet_relaxes() {
    let h = demo();
    let away = write_at(&h, &all(), &format!("/structures/{SID}"), json!({"away": "away"}), at(0)).unwrap();
    let seen = write_at(
        &away,
        &Actor::Device { device_id: CAM.into() },
        &format!("/devices/cameras/{CAM}"),
        json!({"last_event": {"has_person": true, "has_motion": true, "has_sound": false,
            "start_time": "2026-11-27T12:05:00.000Z", "end_time": "2026-11-27T12:06:00.000Z"}}),
        at(5),
    )
    .unwrap();
    assert_eq!(structure(&seen, "wwn_security_state"), json!("deter"));
    assert_eq!(structure(&seen, "away"), json!("away"), "a camera alone never brings a home back");
    assert_eq!(structure(&seen, "last_presence_at"), json!("2026-11-27T12:05:00.000Z"));
    assert_eq!(tick(&seen, at(10)), seen);
    let relaxed = tick(&seen, at(21));
    assert_eq!(structure(&relaxed, "wwn_security_state"), json!("ok"));
    // Past the hold time too, a person at the camera deters and the home stays away.
    let again = write_at(
        &relaxed,
        &Actor::Device { device_id: CAM.into() },
        &format!("/devices/cameras/{CAM}"),
        json!({"last_event": {"has_person": true, "start_time": "2026-11-27T14:00:00.000Z"}}),
        at(120),
    )
    .unwrap();
    assert_eq!(
        (structure(&again, "away"), structure(&again, "wwn_security_state")),
        (json!("away"), json!("deter"))
    );
    // Home relaxes at once.
    let home =
        write_at(&again, &all(), &format!("/structures/{SID}"), json!({"away": "home"}), at(121)).unwrap();
    assert_eq!(structure(&home, "wwn_security_state"), json!("ok"));
}

#[test]
fn an_expired_fan_timer_turns_off_on_the_tick() {
    let h = demo();
    let h =
        write(&h, &all(), &path(HP), json!({"fan_timer_active": true, "fan_timer_duration": 15})).unwrap();
    assert_eq!(hp(&h, "fan_timer_active"), json!(true));
    assert_eq!(tick(&h, at(10)), h);
    let off = tick(&h, at(16));
    assert_eq!(hp(&off, "fan_timer_active"), json!(false));
    let writes = assist::due(&off, at(17), &RuleConfig::default());
    assert!(writes.iter().all(|w| !matches!(&w.target, Target::Device(..))), "{writes:?}");
    let _ = EntityWrite { target: Target::Structure, fields: Default::default() };
}
