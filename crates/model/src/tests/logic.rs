//! Home logic after writes.

use serde_json::json;

use super::*;

const T_HP: &str = "/devices/thermostats/hp-thermostat";
const S: &str = "/structures/demo-structure";

#[test]
fn writing_either_scale_derives_the_other() {
    let h = write(&demo(), &all(), T_HP, json!({"target_temperature_f": 72})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_c"], json!(22));
    let h = write(&h, &all(), T_HP, json!({"target_temperature_c": 20.5})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_f"], json!(69));
    assert_eq!(thermostat(&h, HP)["target_temperature_c"], json!(20.5));
}

#[test]
fn the_demo_has_both_scales_everywhere() {
    let t = thermostat(&demo(), HP);
    for (f, c) in crate::schema::TWINS {
        assert!(t.contains_key(*f) && t.contains_key(*c), "{f} {c}");
    }
    assert_eq!(t["away_temperature_low_f"], t["eco_temperature_low_f"]);
    assert_eq!(t["away_temperature_high_c"], t["eco_temperature_high_c"]);
}

#[test]
fn names_come_from_where_and_label() {
    let h = demo();
    let t = thermostat(&h, HP);
    assert_eq!(t["where_name"], json!("Living Room"));
    assert_eq!(t["name"], json!("Living Room (Heat pump)"));
    assert_eq!(t["name_long"], json!("Living Room Thermostat (Heat pump)"));
    let t = thermostat(&h, HO);
    assert_eq!(t["name"], json!("Bedroom"));
    assert_eq!(t["name_long"], json!("Bedroom Thermostat"));
    let p = h.device(Entity::SmokeCoAlarm, P1).unwrap();
    assert_eq!(p["name_long"], json!("Kitchen Nest Protect (0305)"));
    let c = h.device(Entity::Camera, CAM).unwrap();
    assert_eq!(c["name_long"], json!("Front Door Camera (porch)"));
    let h = write(&h, &all(), T_HP, json!({"label": "upstairs"})).unwrap();
    assert_eq!(thermostat(&h, HP)["name"], json!("Living Room (upstairs)"));
    assert_eq!(thermostat(&h, HP)["name_long"], json!("Living Room Thermostat (upstairs)"));
}

#[test]
fn structure_lists_its_devices() {
    let s = demo().structure().clone();
    assert_eq!(s["thermostats"], json!([HO, HP]));
    assert_eq!(s["smoke_co_alarms"], json!([P2, P1]));
    assert_eq!(s["cameras"], json!([CAM]));
    assert_eq!(s["devices"], json!({}));
}

#[test]
fn entering_eco_remembers_the_previous_mode() {
    let h = write(&demo(), &all(), T_HP, json!({"hvac_mode": "eco"})).unwrap();
    assert_eq!(thermostat(&h, HP)["previous_hvac_mode"], json!("heat"));
    let h = write(&h, &all(), T_HP, json!({"hvac_mode": "off"})).unwrap();
    assert_eq!(thermostat(&h, HP)["previous_hvac_mode"], json!("heat"));
}

#[test]
fn away_puts_thermostats_in_eco_and_home_restores_them() {
    let h = write(&demo(), &all(), T_HO, json!({"hvac_mode": "off"})).unwrap();
    let h = write(&h, &all(), S, json!({"away": "away"})).unwrap();
    assert_eq!(thermostat(&h, HP)["hvac_mode"], json!("eco"));
    assert_eq!(thermostat(&h, HP)["previous_hvac_mode"], json!("heat"));
    // Off stays off.
    assert_eq!(thermostat(&h, HO)["hvac_mode"], json!("off"));
    let h = write(&h, &all(), S, json!({"away": "home"})).unwrap();
    assert_eq!(thermostat(&h, HP)["hvac_mode"], json!("heat"));
    assert_eq!(thermostat(&h, HO)["hvac_mode"], json!("off"));
}

const T_HO: &str = "/devices/thermostats/ho-thermostat";

#[test]
fn protect_alarms_roll_up_to_the_structure() {
    let h =
        service(&demo(), "/devices/smoke_co_alarms/hallway-protect", json!({"smoke_alarm_state": "warning"}));
    assert_eq!(h.structure()["smoke_alarm_state"], json!("warning"));
    assert_eq!(h.structure()["co_alarm_state"], json!("ok"));
    assert_eq!(h.device(Entity::SmokeCoAlarm, P2).unwrap()["ui_color_state"], json!("yellow"));
    let h =
        service(&h, "/devices/smoke_co_alarms/kitchen-protect", json!({"smoke_alarm_state": "emergency"}));
    assert_eq!(h.structure()["smoke_alarm_state"], json!("emergency"));
    assert_eq!(h.device(Entity::SmokeCoAlarm, P1).unwrap()["ui_color_state"], json!("red"));
    let h = service(
        &h,
        "/devices/smoke_co_alarms/kitchen-protect",
        json!({"smoke_alarm_state": "ok", "battery_health": "replace"}),
    );
    assert_eq!(h.structure()["smoke_alarm_state"], json!("warning"));
    assert_eq!(h.device(Entity::SmokeCoAlarm, P1).unwrap()["ui_color_state"], json!("yellow"));
}

#[test]
fn a_person_seen_while_away_deters_and_home_relaxes() {
    let person = json!({"last_event": {"has_person": true, "has_motion": true, "has_sound": false, "start_time": "2026-11-27T12:00:00.000Z"}});
    // While home, a person changes nothing.
    let h = service(&demo(), "/devices/cameras/front-camera", person.clone());
    assert_eq!(h.structure()["wwn_security_state"], json!("ok"));
    let h = write(&demo(), &all(), S, json!({"away": "away"})).unwrap();
    assert_eq!(h.structure()["wwn_security_state"], json!("ok"));
    let h = service(&h, "/devices/cameras/front-camera", person.clone());
    assert_eq!(h.structure()["wwn_security_state"], json!("deter"));
    let h = write(&h, &all(), S, json!({"away": "home"})).unwrap();
    assert_eq!(h.structure()["wwn_security_state"], json!("ok"));
    // A camera that is off does not count.
    let h = write(&demo(), &all(), S, json!({"away": "away"})).unwrap();
    let h = write(&h, &all(), "/devices/cameras/front-camera", json!({"is_streaming": false})).unwrap();
    let h = service(&h, "/devices/cameras/front-camera", person);
    assert_eq!(h.structure()["wwn_security_state"], json!("ok"));
}

#[test]
fn settle_reaches_a_fixed_point() {
    let h = demo();
    let mut again = h.clone();
    let config = RuleConfig::default();
    let ctx = WriteContext { actor: &Actor::Service, now: now(), config: &config, measured_at: None };
    crate::logic::settle(&h, &mut again, &ctx);
    assert_eq!(again, h);
}

#[test]
fn the_structure_lists_product_data_through_other_writes() {
    let pd = product(&[crate::Permission::ProductDataReadWrite, crate::Permission::ThermostatReadWrite]);
    let at = json!({"structure_id": "demo-structure"});
    let h = write(&demo(), &pd, "/devices/acme/meter/m1", json!({"kwh": 1, "location": at})).unwrap();
    assert_eq!(h.structure()["devices"], json!({"acme": {"meter": ["m1"]}}));
    let h =
        write(&h, &pd, "/devices/thermostats/hp-thermostat", json!({"target_temperature_f": 71})).unwrap();
    assert_eq!(h.structure()["devices"], json!({"acme": {"meter": ["m1"]}}), "kept by a thermostat write");
    let h = write(&h, &pd, "/devices/acme/meter/m2", json!({"kwh": 2, "location": at})).unwrap();
    assert_eq!(h.structure()["devices"], json!({"acme": {"meter": ["m1", "m2"]}}));
}
