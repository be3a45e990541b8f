//! Property tests: (a) accepted writes never break a rule, (b) F/C twins always agree,
//! (c) filtering never shows a field the permissions do not grant (and shows every one they do).

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::invariants::violations;
use crate::schema::{self, Entity};
use crate::view::filter_home;

#[derive(Debug, Clone)]
enum Op {
    Product(&'static str, Value),
    Device(&'static str, &'static str, Value),
}

fn temp_f() -> impl Strategy<Value = Value> {
    (40i64..100).prop_map(Value::from)
}

fn temp_c() -> impl Strategy<Value = Value> {
    (10i64..70).prop_map(|h| json!(h as f64 / 2.0))
}

fn thermostat_body() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        temp_f().prop_map(|v| json!({"target_temperature_f": v})),
        temp_c().prop_map(|v| json!({"target_temperature_c": v})),
        (temp_f(), temp_f())
            .prop_map(|(l, h)| json!({"target_temperature_low_f": l, "target_temperature_high_f": h})),
        (temp_c(), temp_c())
            .prop_map(|(l, h)| json!({"target_temperature_low_c": l, "target_temperature_high_c": h})),
        temp_f().prop_map(|v| json!({"target_temperature_high_f": v})),
        temp_c().prop_map(|v| json!({"target_temperature_low_c": v})),
        prop::sample::select(vec!["heat", "cool", "heat-cool", "eco", "off", "range"])
            .prop_map(|m| json!({"hvac_mode": m})),
        (prop::sample::select(vec!["heat", "heat-cool", "cool"]), temp_f())
            .prop_map(|(m, t)| json!({"hvac_mode": m, "target_temperature_f": t})),
        any::<bool>().prop_map(|b| json!({"fan_timer_active": b})),
        prop::sample::select(vec![10i64, 15, 30, 720, 960]).prop_map(|d| json!({"fan_timer_duration": d})),
    ];
    field
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::sample::select(vec![HP, HO]), thermostat_body()).prop_map(|(id, b)| Op::Product(if id == HP { "/devices/thermostats/hp-thermostat" } else { "/devices/thermostats/ho-thermostat" }, b)),
        1 => prop::sample::select(vec!["home", "away"]).prop_map(|a| Op::Product("/structures/demo-structure", json!({"away": a}))),
        1 => any::<bool>().prop_map(|b| Op::Device(HP, "/devices/thermostats/hp-thermostat", json!({"is_using_emergency_heat": b}))),
        1 => any::<bool>().prop_map(|b| Op::Device(HP, "/devices/thermostats/hp-thermostat", json!({"is_locked": b}))),
        1 => prop::sample::select(vec!["ok", "warning", "emergency"]).prop_map(|s| Op::Device(P1, "/devices/smoke_co_alarms/kitchen-protect", json!({"co_alarm_state": s}))),
        1 => (temp_f()).prop_map(|t| Op::Device(HO, "/devices/thermostats/ho-thermostat", json!({"target_temperature_f": t}))),
    ]
}

use crate::diff::diff_homes;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) + (b): whatever sequence of writes is tried, every accepted one leaves a home that
    /// satisfies every invariant, and a refused one leaves the home unchanged.
    #[test]
    fn accepted_writes_keep_every_rule(ops in prop::collection::vec(op(), 1..25)) {
        let config = RuleConfig::default();
        let mut h = demo();
        prop_assert!(violations(&h, &config).is_empty(), "{:?}", violations(&h, &config));
        for op in ops {
            let (actor, path, body) = match &op {
                Op::Product(p, b) => (all(), *p, b.clone()),
                Op::Device(id, p, b) => (Actor::Device { device_id: (*id).into() }, *p, b.clone()),
            };
            let before = h.clone();
            let reference = crate::logic::reference::with_every_pass(|| write(&h, &actor, path, body.clone()));
            match write(&h, &actor, path, body) {
                Ok(next) => {
                    prop_assert_eq!(Some(&next), reference.as_ref().ok(), "home logic's shortcut changed the answer");
                    let v = violations(&next, &config);
                    prop_assert!(v.is_empty(), "after {:?}: {:?}", op, v);
                    // The change log's patches lead forward and back exactly.
                    let d = diff_homes(&h, &next);
                    let mut doc = h.to_json();
                    crate::diff::json_merge(&mut doc, &d.patch);
                    prop_assert_eq!(&doc, &next.to_json());
                    crate::diff::json_merge(&mut doc, &d.inverse);
                    prop_assert_eq!(&doc, &h.to_json());
                    // The stored text is the text of the document.
                    prop_assert_eq!(next.to_json_text(), crate::json_text(&next.to_json()));
                    h = next;
                }
                Err(e) => {
                    prop_assert!(e.kind == crate::error::ErrorKind::Invalid, "{:?} -> {:?}", op, e);
                    prop_assert_eq!(&h, &before);
                }
            }
        }
    }

    /// (b) Whichever scale is written, the twins agree.
    #[test]
    fn twins_agree(f in 50i64..=90, half_c in 18i64..=64, use_c in any::<bool>()) {
        let body = if use_c { json!({"target_temperature_c": half_c as f64 / 2.0}) } else { json!({"target_temperature_f": f}) };
        let h = write(&demo(), &all(), "/devices/thermostats/hp-thermostat", body).unwrap();
        let t = thermostat(&h, HP);
        let fv = t["target_temperature_f"].as_f64().unwrap();
        let cv = t["target_temperature_c"].as_f64().unwrap();
        prop_assert!(crate::units::f_to_c(fv) == cv || crate::units::c_to_f(cv) == fv, "{fv} {cv}");
        prop_assert_eq!(fv.fract(), 0.0);
        prop_assert_eq!((cv * 2.0).fract(), 0.0);
    }
}

/// Checks one filtered home against the schema both ways.
fn check_filter(h: &Home, perms: PermissionSet) {
    let view = filter_home(h, perms);
    for kind in Entity::DEVICE_KINDS {
        let coll = kind.collection().unwrap();
        for (id, d) in h.devices(kind) {
            let shown = view
                .get("devices")
                .and_then(|v| v.get(coll))
                .and_then(|v| v.get(id))
                .and_then(Value::as_object);
            check_fields(kind, "", &d.to_map(), shown, perms);
        }
    }
    let shown = view.get("structures").and_then(|v| v.get(h.id())).and_then(Value::as_object);
    check_fields(Entity::Structure, "", &h.structure().to_map(), shown, perms);
}

fn check_fields(
    entity: Entity,
    prefix: &str,
    stored: &Map<String, Value>,
    shown: Option<&Map<String, Value>>,
    perms: PermissionSet,
) {
    let empty = Map::new();
    let shown = shown.unwrap_or(&empty);
    for (k, _) in shown {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
        let spec = schema::field(entity, &path).unwrap_or_else(|| panic!("shown field {path} has no row"));
        assert!(spec.read.intersects(perms), "{path} shown to {perms:?}");
    }
    for (k, v) in stored {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
        let Some(spec) = schema::field(entity, &path) else {
            continue;
        };
        let granted = spec.read.intersects(perms);
        assert_eq!(shown.contains_key(k), granted, "{path} with {perms:?}");
        if granted && schema::has_members(entity, &path) {
            check_fields(
                entity,
                &path,
                v.as_object().unwrap(),
                shown.get(k).and_then(Value::as_object),
                perms,
            );
        }
    }
}

/// (c) Every permission subset (all 2^15) against every field of the demo home.
#[test]
fn filtering_is_exact_for_every_permission_subset() {
    let mut h = demo();
    // Add product data so that permission is exercised too.
    h.product_data_mut("acme", "lighting").insert("pd1".into(), json!({"software": {"version": "1"}}));
    for bits in 0..(1u32 << crate::Permission::ALL.len()) {
        let perms = PermissionSet::from_bits(bits);
        check_filter(&h, perms);
        let view = filter_home(&h, perms);
        let has_pd = view.get("devices").and_then(|d| d.get("acme")).is_some();
        assert_eq!(has_pd, perms.contains(crate::Permission::ProductDataReadWrite));
    }
}
