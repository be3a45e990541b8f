//! Every rule, accepted and refused, with the exact error JSON: one file, as the rules are
//! one module (`rules.rs`), test by test in its order.

use serde_json::json;

use super::*;
use crate::Permission as P;

const T_HP: &str = "/devices/thermostats/hp-thermostat";
const T_HO: &str = "/devices/thermostats/ho-thermostat";

// ---- 1. write permission per field ----

#[test]
fn product_without_thermostat_write_is_refused_with_the_field_list() {
    let r = write(&demo(), &product(&[P::ThermostatRead]), T_HP, json!({"target_temperature_f": 70}));
    assert_eq!(
        err(r),
        json!({
            "kind": "invalid",
            "error": "No write permission(s) for field(s): target_temperature_f",
            "type": ty("no-write-permission"),
            "message": "No write permission(s) for field(s): target_temperature_f",
            "details": {"fields": "target_temperature_f"}
        })
    );
}

#[test]
fn read_only_fields_are_refused_together() {
    let r = write(
        &demo(),
        &all(),
        T_HP,
        json!({"ambient_temperature_f": 80, "device_id": "x", "eco_temperature_low_f": 60, "target_temperature_f": 70}),
    );
    let e = err(r);
    assert_eq!(
        e["error"],
        "No write permission(s) for field(s): ambient_temperature_f,device_id,eco_temperature_low_f"
    );
    assert_eq!(e["details"]["fields"], "ambient_temperature_f,device_id,eco_temperature_low_f");
}

/// A field the schema does not know is not a permission problem: it gets its own error, with
/// the closest known field when it is a likely misspelling, before any permission check.
#[test]
fn unknown_fields_get_their_own_error() {
    let r = write(&demo(), &all(), T_HP, json!({"ambient_temperature_f": 80, "warp_drive": true}));
    let e = err(r);
    assert_eq!(e["error"], "Unknown field(s) of thermostats: warp_drive");
    assert_eq!(e["type"], ty("unknown-field"));
    assert_eq!(e["details"]["fields"], "warp_drive");
    assert!(e["details"].get("did_you_mean").is_none());
    let e = err(write(&demo(), &all(), T_HP, json!({"target_temp_f": 70})));
    assert_eq!(e["error"], "Unknown field(s) of thermostats: target_temp_f");
    assert_eq!(
        e["message"],
        "Unknown field(s) of thermostats: target_temp_f (did you mean target_temperature_f?)"
    );
    assert_eq!(e["details"]["did_you_mean"], "target_temperature_f");
    assert_eq!(e["kind"], "invalid");
}

#[test]
fn permission_is_checked_before_anything_else() {
    // Out of range *and* not permitted: the permission error wins.
    let r = write(&demo(), &product(&[P::AwayReadWrite]), T_HP, json!({"target_temperature_f": 200}));
    assert_eq!(err(r)["type"], ty("no-write-permission"));
}

#[test]
fn each_permission_writes_only_its_fields() {
    let h = demo();
    assert!(
        write(&h, &product(&[P::AwayReadWrite]), "/structures/demo-structure", json!({"away": "away"}))
            .is_ok()
    );
    assert!(
        write(&h, &product(&[P::AwayRead]), "/structures/demo-structure", json!({"away": "away"})).is_err()
    );
    assert!(
        write(&h, &product(&[P::StructureReadWrite]), "/structures/demo-structure", json!({"name": "Cabin"}))
            .is_ok()
    );
    assert!(
        write(
            &h,
            &product(&[P::ThermostatReadWrite]),
            "/structures/demo-structure",
            json!({"name": "Cabin"})
        )
        .is_err()
    );
    assert!(
        write(
            &h,
            &product(&[P::CameraReadWrite]),
            "/devices/cameras/front-camera",
            json!({"is_streaming": false})
        )
        .is_ok()
    );
    assert!(
        write(
            &h,
            &product(&[P::CameraReadImages]),
            "/devices/cameras/front-camera",
            json!({"is_streaming": false})
        )
        .is_err()
    );
    assert!(
        write(
            &h,
            &product(&[P::SmokeCoRead]),
            "/devices/smoke_co_alarms/kitchen-protect",
            json!({"co_alarm_state": "ok"})
        )
        .is_err()
    );
}

#[test]
fn metadata_is_never_writable() {
    let e = err(write(&demo(), &all(), "/metadata", json!({"client_version": 9})));
    assert_eq!(e["error"], "No write permission(s) for field(s): client_version");
}

#[test]
fn a_device_writes_its_own_reported_fields_and_nothing_else() {
    let me = Actor::Device { device_id: HP.into() };
    let h =
        write(&demo(), &me, T_HP, json!({"ambient_temperature_f": 71, "humidity": 45, "hvac_state": "off"}))
            .unwrap();
    let t = thermostat(&h, HP);
    assert_eq!(t["ambient_temperature_f"], json!(71));
    assert_eq!(t["ambient_temperature_c"], json!(21.5));
    assert_eq!(t["humidity"], json!(45));
    // Another device's fields, or service-only fields, are refused.
    let e = err(write(&demo(), &me, T_HO, json!({"ambient_temperature_f": 71})));
    assert_eq!(e["error"], "No write permission(s) for field(s): ambient_temperature_f");
    let e = err(write(&demo(), &me, T_HP, json!({"is_online": false, "name": "x"})));
    assert_eq!(e["error"], "No write permission(s) for field(s): is_online,name");
}

#[test]
fn a_device_dial_change_passes_the_same_rules() {
    let me = Actor::Device { device_id: HP.into() };
    let e = err(write(&demo(), &me, T_HP, json!({"target_temperature_f": 95})));
    assert_eq!(e["error"], "Temperature F value is too high: 95.0");
    let h = write(&demo(), &me, T_HP, json!({"target_temperature_f": 72})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_c"], json!(22));
}

// ---- 3. enum values and types ----

#[test]
fn hvac_mode_outside_the_enum_is_refused() {
    // python-nest's CLI sends "range"; a faithful server refuses it.
    let e = err(write(&demo(), &all(), T_HP, json!({"hvac_mode": "range"})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Invalid value for hvac_mode: expected one of 'heat', 'cool', 'heat-cool', 'eco', 'off'",
            "type": ty("invalid-value"),
            "message": "Invalid value for hvac_mode: expected one of 'heat', 'cool', 'heat-cool', 'eco', 'off'",
            "details": {"field_name": "hvac_mode"}
        })
    );
}

#[test]
fn away_accepts_only_home_and_away() {
    for bad in ["unknown", "auto-away", "vacation", ""] {
        let e = err(write(&demo(), &all(), "/structures/demo-structure/away", json!(bad)));
        assert_eq!(e["error"], "Invalid value for away: expected one of 'home', 'away'", "{bad}");
    }
}

#[test]
fn temperature_scale_accepts_c_and_f() {
    let e = err(write(&demo(), &all(), T_HP, json!({"temperature_scale": "K"})));
    assert_eq!(e["error"], "Invalid value for temperature_scale: expected one of 'C', 'F'");
    let h = write(&demo(), &all(), T_HP, json!({"temperature_scale": "C"})).unwrap();
    assert_eq!(thermostat(&h, HP)["temperature_scale"], json!("C"));
}

#[test]
fn temperatures_in_the_wrong_format_are_refused() {
    for bad in [json!("70"), json!(70.5), json!(true), json!(null), json!([70]), json!({"v": 70})] {
        let e = err(write(&demo(), &all(), T_HP, json!({"target_temperature_f": bad})));
        assert_eq!(
            e,
            json!({
                "kind": "invalid",
                "error": "Temperature 'target_temperature_f' is in wrong format",
                "type": ty("format-error"),
                "message": "Temperature 'target_temperature_f' is in wrong format",
                "details": {"field_name": "target_temperature_f"}
            }),
            "{bad}"
        );
    }
    // Whole-valued floats are fine for F; C is rounded to 0.5.
    let h = write(&demo(), &all(), T_HP, json!({"target_temperature_f": 70.0})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_f"], json!(70));
    let h = write(&demo(), &all(), T_HP, json!({"target_temperature_c": 21.3})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_c"], json!(21.5));
    assert_eq!(thermostat(&h, HP)["target_temperature_f"], json!(71));
}

#[test]
fn wrong_json_types_get_a_clear_error_per_field_type() {
    let cases = [
        (
            T_HP,
            json!({"fan_timer_active": "yes"}),
            "Invalid value for fan_timer_active: expected true or false",
        ),
        (
            T_HP,
            json!({"fan_timer_duration": "15"}),
            "Invalid value for fan_timer_duration: expected an integer",
        ),
        (
            T_HP,
            json!({"fan_timer_duration": 1e300}),
            "Invalid value for fan_timer_duration: expected an integer",
        ),
        (T_HP, json!({"label": 5}), "Invalid value for label: expected a string"),
        (
            T_HP,
            json!({"hvac_mode": 1}),
            "Invalid value for hvac_mode: expected one of 'heat', 'cool', 'heat-cool', 'eco', 'off'",
        ),
        ("/structures/demo-structure", json!({"name": ["x"]}), "Invalid value for name: expected a string"),
        ("/structures/demo-structure", json!({"eta": "soon"}), "Invalid value for eta: expected an object"),
        (
            "/devices/cameras/front-camera",
            json!({"is_streaming": 1}),
            "Invalid value for is_streaming: expected true or false",
        ),
    ];
    for (path, body, text) in cases {
        let e = err(write(&demo(), &all(), path, body.clone()));
        assert_eq!(e["error"], text, "{body}");
        assert_eq!(e["kind"], "invalid");
    }
}

#[test]
fn huge_strings_are_refused() {
    let e = err(write(&demo(), &all(), T_HP, json!({"label": "x".repeat(100_000)})));
    assert_eq!(e["error"], "Invalid value for label: expected a string of at most 64 characters");
    let e = err(write(&demo(), &all(), T_HP, json!({"label": "a\u{0}b"})));
    assert_eq!(e["details"]["field_name"], "label");
}

#[test]
fn bodies_of_the_wrong_shape_are_invalid_content() {
    for (path, body) in [
        (T_HP, json!(5)),
        (T_HP, json!("heat")),
        ("/devices/thermostats", json!([1, 2])),
        ("/", json!({"devices": 3})),
        ("/structures", json!({"demo-structure": "x"})),
    ] {
        let e = err(write(&demo(), &all(), path, body.clone()));
        assert_eq!(e["error"], "Invalid content sent", "{path} {body}");
        assert_eq!(e["type"], ty("invalid-content-sent"));
    }
}

#[test]
fn unknown_elements_are_not_found() {
    let e = err(write(&demo(), &all(), "/devices/thermostats/nope", json!({"target_temperature_f": 70})));
    assert_eq!(e["kind"], "not_found");
    assert_eq!(e["details"]["path"], "/devices/thermostats/nope");
    let e = err(write(&demo(), &all(), "/structures/nope/away", json!("away")));
    assert_eq!(e["kind"], "not_found");
    let e = err(write(&demo(), &all(), "/flux", json!({"a": 1})));
    assert_eq!(e["kind"], "not_found");
}

// ---- 4. hvac_mode vs can_heat / can_cool ----

#[test]
fn modes_need_the_hardware() {
    let e = err(write(&demo(), &all(), T_HO, json!({"hvac_mode": "cool"})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot change HVAC mode to cool: HVAC cannot cool",
            "type": ty("incompatible-mode"),
            "message": "Cannot change HVAC mode to cool: HVAC cannot cool",
            "details": {"mode": "cool", "action": "cool"}
        })
    );
    let e = err(write(&demo(), &all(), T_HO, json!({"hvac_mode": "heat-cool"})));
    assert_eq!(e["error"], "Cannot change HVAC mode to heat-cool: HVAC cannot cool");
    for ok in ["heat", "eco", "off"] {
        assert!(write(&demo(), &all(), T_HO, json!({"hvac_mode": ok})).is_ok(), "{ok}");
    }
}

// ---- 5. emergency heat ----

#[test]
fn no_cooling_mode_while_emergency_heat_is_on() {
    let h = demo();
    assert_eq!(thermostat(&h, HP)["is_using_emergency_heat"], json!(true));
    for mode in ["cool", "heat-cool"] {
        let e = err(write(&h, &all(), T_HP, json!({"hvac_mode": mode})));
        assert_eq!(
            e,
            json!({
                "kind": "invalid",
                "error": format!("Cannot change HVAC mode to {mode} while emergency heat is on"),
                "type": ty("emergency-heat"),
                "message": format!("Cannot change HVAC mode to {mode} while emergency heat is on"),
                "details": {"mode": mode}
            })
        );
    }
    assert!(write(&h, &all(), T_HP, json!({"hvac_mode": "off"})).is_ok());
    // Once the heat pump reports emergency heat off, cooling is allowed.
    let h =
        write(&h, &Actor::Device { device_id: HP.into() }, T_HP, json!({"is_using_emergency_heat": false}))
            .unwrap();
    let h = write(&h, &all(), T_HP, json!({"hvac_mode": "cool"})).unwrap();
    assert_eq!(thermostat(&h, HP)["hvac_mode"], json!("cool"));
}

// ---- 6. smoke/CO safety shutoff ----

#[test]
fn safety_shutoff_refuses_mode_and_fan_changes() {
    let h =
        service(&demo(), "/devices/smoke_co_alarms/kitchen-protect", json!({"co_alarm_state": "emergency"}));
    assert_eq!(h.structure()["co_alarm_state"], json!("emergency"));
    let e = err(write(&h, &all(), T_HP, json!({"fan_timer_active": true})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot activate fan during smoke/co safety shutoff",
            "type": ty("safety-shutoff-on"),
            "message": "Cannot activate fan during smoke/co safety shutoff",
        })
    );
    let e = err(write(&h, &all(), T_HP, json!({"hvac_mode": "off"})));
    assert_eq!(e["error"], "Cannot change HVAC mode during smoke/co safety shutoff");
    // Turning the fan off and changing a target stay possible.
    assert!(write(&h, &all(), T_HP, json!({"fan_timer_active": false})).is_ok());
    assert!(write(&h, &all(), T_HP, json!({"target_temperature_f": 66})).is_ok());
    // Smoke emergency too; when the alarm clears, control returns.
    let h = service(
        &h,
        "/devices/smoke_co_alarms/kitchen-protect",
        json!({"co_alarm_state": "ok", "smoke_alarm_state": "emergency"}),
    );
    assert!(write(&h, &all(), T_HP, json!({"hvac_mode": "off"})).is_err());
    let h = service(&h, "/devices/smoke_co_alarms/kitchen-protect", json!({"smoke_alarm_state": "ok"}));
    assert!(write(&h, &all(), T_HP, json!({"hvac_mode": "off"})).is_ok());
}

// ---- 7. mode gating of targets ----

#[test]
fn no_target_change_in_eco_or_off() {
    for mode in ["eco", "off"] {
        let h = write(&demo(), &all(), T_HP, json!({"hvac_mode": mode})).unwrap();
        let e = err(write(&h, &all(), T_HP, json!({"target_temperature_f": 70})));
        assert_eq!(
            e,
            json!({
                "kind": "invalid",
                "error": format!("Cannot change target temperature while mode is {mode}"),
                "type": ty("mode-error"),
                "message": format!("Cannot change target temperature while mode is {mode}"),
                "details": {"mode": mode}
            })
        );
    }
}

#[test]
fn single_target_vs_low_high_follow_the_mode() {
    let e = err(write(&demo(), &all(), T_HP, json!({"target_temperature_low_f": 66})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot set target_temperature_low while mode is heat",
            "type": ty("mode-error"),
            "message": "Cannot set target_temperature_low while mode is heat",
            "details": {"fieldName": "target_temperature_low", "mode": "heat"}
        })
    );
    let h = service(&demo(), T_HP, json!({"is_using_emergency_heat": false}));
    let h = write(&h, &all(), T_HP, json!({"hvac_mode": "heat-cool"})).unwrap();
    let e = err(write(&h, &all(), T_HP, json!({"target_temperature_c": 20})));
    assert_eq!(e["error"], "Cannot set target_temperature while mode is heat-cool");
    assert_eq!(e["details"], json!({"fieldName": "target_temperature", "mode": "heat-cool"}));
    assert!(write(&h, &all(), T_HP, json!({"target_temperature_high_c": 25})).is_ok());
}

#[test]
fn mode_and_targets_in_one_request_are_judged_in_the_new_mode() {
    let h = write(&demo(), &all(), T_HP, json!({"hvac_mode": "eco"})).unwrap();
    let h = write(&h, &all(), T_HP, json!({"hvac_mode": "heat", "target_temperature_f": 69})).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_f"], json!(69));
    let h = service(&h, T_HP, json!({"is_using_emergency_heat": false}));
    let h = write(
        &h,
        &all(),
        T_HP,
        json!({"hvac_mode": "heat-cool", "target_temperature_low_f": 64, "target_temperature_high_f": 78}),
    )
    .unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_low_c"], json!(18));
}

// ---- 8. absolute ranges ----

#[test]
fn absolute_ranges_in_both_scales() {
    let cases = [
        (
            json!({"target_temperature_f": 100}),
            "Temperature F value is too high: 100.0",
            "high-f-value",
            "tempF",
            "100.0",
        ),
        (
            json!({"target_temperature_f": 49}),
            "Temperature F value is too low: 49.0",
            "low-f-value",
            "tempF",
            "49.0",
        ),
        (
            json!({"target_temperature_c": 32.5}),
            "Temperature C value is too high: 32.5",
            "high-c-value",
            "tempC",
            "32.5",
        ),
        (
            json!({"target_temperature_c": 8.5}),
            "Temperature C value is too low: 8.5",
            "low-c-value",
            "tempC",
            "8.5",
        ),
    ];
    for (body, text, anchor, key, value) in cases {
        let e = err(write(&demo(), &all(), T_HP, body));
        assert_eq!(
            e,
            json!({"kind": "invalid", "error": text, "type": ty(anchor), "message": text, "details": {key: value}})
        );
    }
    for ok in [
        json!({"target_temperature_f": 50}),
        json!({"target_temperature_f": 90}),
        json!({"target_temperature_c": 9}),
        json!({"target_temperature_c": 32}),
    ] {
        assert!(write(&demo(), &all(), T_HP, ok.clone()).is_ok(), "{ok}");
    }
}

#[test]
fn both_scales_in_one_request_must_agree() {
    assert!(
        write(&demo(), &all(), T_HP, json!({"target_temperature_f": 70, "target_temperature_c": 21})).is_ok()
    );
    let e =
        err(write(&demo(), &all(), T_HP, json!({"target_temperature_f": 70, "target_temperature_c": 25})));
    assert_eq!(
        e["error"],
        "Invalid value for target_temperature_c: expected the same temperature as target_temperature_f"
    );
}

// ---- 9. lock ranges ----

#[test]
fn locked_thermostats_keep_targets_in_the_lock_range() {
    let h = service(&demo(), T_HP, json!({"is_locked": true}));
    let e = err(write(&h, &all(), T_HP, json!({"target_temperature_f": 76})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Temperature F '76.0' is too high for lock temperature '75.0'",
            "type": ty("high-f-value-4-lock"),
            "message": "Temperature F '76.0' is too high for lock temperature '75.0'",
            "details": {"tempF": "76.0", "highLockTemp": "75.0"}
        })
    );
    // 75 F is 24 C: 24.5 C is above the lock.
    let e = err(write(&h, &all(), T_HP, json!({"target_temperature_c": 24.5})));
    assert_eq!(e["error"], "Temperature C '24.5' is too high for lock temperature '24.0'");
    assert_eq!(e["details"], json!({"tempC": "24.5", "highLockTemp": "24.0"}));
    let e = err(write(&h, &all(), T_HP, json!({"target_temperature_f": 60})));
    assert_eq!(e["error"], "Temperature F '60.0' is too low for lock temperature '65.0'");
    assert_eq!(e["type"], ty("low-f-value-4-lock"));
    assert_eq!(e["details"], json!({"tempF": "60.0", "lowLockTemp": "65.0"}));
    assert!(write(&h, &all(), T_HP, json!({"target_temperature_f": 70})).is_ok());
    // Mode changes are allowed while locked.
    assert!(write(&h, &all(), T_HP, json!({"hvac_mode": "off"})).is_ok());
}

// ---- 10. heat-cool order and spread ----

fn heat_cool() -> Home {
    let h = service(&demo(), T_HP, json!({"is_using_emergency_heat": false}));
    write(&h, &all(), T_HP, json!({"hvac_mode": "heat-cool"})).unwrap()
}

#[test]
fn low_must_be_below_high() {
    let e = err(write(
        &heat_cool(),
        &all(),
        T_HP,
        json!({"target_temperature_low_f": 74, "target_temperature_high_f": 72}),
    ));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot set target low temperature '74.0' higher than target high temperature '72.0'",
            "type": ty("low-high-error"),
            "message": "Cannot set target low temperature '74.0' higher than target high temperature '72.0'",
            "details": {"lowTemp": "74.0", "highTemp": "72.0"}
        })
    );
    // Against the stored high (76 F).
    let e = err(write(&heat_cool(), &all(), T_HP, json!({"target_temperature_low_f": 80})));
    assert_eq!(e["details"], json!({"lowTemp": "80.0", "highTemp": "76.0"}));
}

#[test]
fn low_and_high_keep_the_minimum_spread() {
    let e = err(write(
        &heat_cool(),
        &all(),
        T_HP,
        json!({"target_temperature_low_f": 70, "target_temperature_high_f": 72}),
    ));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot set target temperature closer than 3.0 degrees F",
            "type": ty("spread-error"),
            "message": "Cannot set target temperature closer than 3.0 degrees F",
            "details": {"spread": "3.0", "scale": "F"}
        })
    );
    let e = err(write(
        &heat_cool(),
        &all(),
        T_HP,
        json!({"target_temperature_low_c": 21, "target_temperature_high_c": 22}),
    ));
    assert_eq!(e["error"], "Cannot set target temperature closer than 1.5 degrees C");
    let h = write(
        &heat_cool(),
        &all(),
        T_HP,
        json!({"target_temperature_low_f": 70, "target_temperature_high_f": 73}),
    )
    .unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_high_c"], json!(23));
}

#[test]
fn the_spread_is_configurable() {
    let h = heat_cool();
    let loc = Location::parse(T_HP).unwrap();
    let body = json!({"target_temperature_low_f": 70, "target_temperature_high_f": 72});
    let plan = plan_write(&loc, &body, [&h]).unwrap();
    let config = RuleConfig { min_spread_f: 2.0, ..RuleConfig::default() };
    let actor = all();
    let ctx = WriteContext { actor: &actor, now: now(), config: &config, measured_at: None };
    assert!(apply_write(&h, &plan, &ctx).is_ok());
}

// ---- 11. fan timer ----

#[test]
fn fan_timer_needs_a_fan_and_an_allowed_duration() {
    let e = err(write(&demo(), &all(), T_HO, json!({"fan_timer_active": true})));
    assert_eq!(
        e,
        json!({
            "kind": "invalid",
            "error": "Cannot activate fan: the HVAC system has no fan",
            "type": ty("no-fan"),
            "message": "Cannot activate fan: the HVAC system has no fan",
        })
    );
    let e = err(write(&demo(), &all(), T_HP, json!({"fan_timer_duration": 10})));
    assert_eq!(
        e["error"],
        "Fan timer duration 10 is not allowed; allowed minutes: 15, 30, 45, 60, 120, 240, 480, 720"
    );
    assert_eq!(e["details"], json!({"fan_timer_duration": "10"}));
}

#[test]
fn fan_timer_timeout_is_computed_from_the_duration() {
    let h =
        write(&demo(), &all(), T_HP, json!({"fan_timer_duration": 30, "fan_timer_active": true})).unwrap();
    let t = thermostat(&h, HP);
    assert_eq!(t["fan_timer_active"], json!(true));
    assert_eq!(t["fan_timer_timeout"], json!("2026-11-27T12:30:00.000Z"));
    let h = write(&h, &all(), T_HP, json!({"fan_timer_active": false})).unwrap();
    assert_eq!(thermostat(&h, HP)["fan_timer_timeout"], json!("1970-01-01T00:00:00.000Z"));
}

#[test]
fn an_expired_fan_timer_turns_off() {
    let h = write(&demo(), &all(), T_HP, json!({"fan_timer_active": true})).unwrap();
    // The service's timer sweep settles every device at a later time.
    let later = now() + chrono::Duration::minutes(16);
    let config = RuleConfig::default();
    let ctx = WriteContext { actor: &Actor::Service, now: later, config: &config, measured_at: None };
    let mut swept = h.clone();
    crate::logic::settle_all(&h, &mut swept, &ctx);
    let h = swept;
    let t = thermostat(&h, HP);
    assert_eq!(t["fan_timer_active"], json!(false));
    assert_eq!(t["fan_timer_timeout"], json!("1970-01-01T00:00:00.000Z"));
}

// ---- 12. ETA ----

const S: &str = "/structures/demo-structure";

#[test]
fn eta_sets_eta_begin_and_begin_zero_cancels() {
    let eta = json!({"trip_id": "t1", "estimated_arrival_window_begin": "2026-11-27T18:00:00.123456", "estimated_arrival_window_end": "2026-11-27T18:01:00Z"});
    let h = write(&demo(), &product(&[P::EtaWrite]), S, json!({"eta": eta})).unwrap();
    assert_eq!(h.structure()["eta_begin"], json!("2026-11-27T18:00:00.123Z"));
    // Cancel another trip: nothing changes.
    let h2 = write(
        &h,
        &all(),
        "/structures/demo-structure/eta",
        json!({"trip_id": "other", "estimated_arrival_window_begin": 0}),
    )
    .unwrap();
    assert_eq!(h2.structure()["eta_begin"], json!("2026-11-27T18:00:00.123Z"));
    let h3 = write(
        &h,
        &all(),
        "/structures/demo-structure/eta",
        json!({"trip_id": "t1", "estimated_arrival_window_begin": 0}),
    )
    .unwrap();
    assert_eq!(h3.structure()["eta_begin"], json!("1970-01-01T00:00:00.000Z"));
}

#[test]
fn eta_errors() {
    let cases = [
        (
            json!({"estimated_arrival_window_begin": "2026-11-27T18:00:00Z", "estimated_arrival_window_end": "2026-11-27T18:01:00Z"}),
            "Invalid value for eta.trip_id: expected a non-empty string of at most 128 characters",
        ),
        (
            json!({"trip_id": "t", "estimated_arrival_window_begin": "soon", "estimated_arrival_window_end": "2026-11-27T18:01:00Z"}),
            "Invalid value for eta.estimated_arrival_window_begin: expected an ISO 8601 time, or 0 to cancel",
        ),
        (
            json!({"trip_id": "t", "estimated_arrival_window_begin": "2026-11-27T18:00:00Z"}),
            "Invalid value for eta.estimated_arrival_window_end: expected an ISO 8601 time",
        ),
        (
            json!({"trip_id": "t", "estimated_arrival_window_begin": "2026-11-27T19:00:00Z", "estimated_arrival_window_end": "2026-11-27T18:00:00Z"}),
            "ETA window begin must not be later than its end",
        ),
    ];
    for (eta, text) in cases {
        let e = err(write(&demo(), &all(), S, json!({"eta": eta})));
        assert_eq!(e["error"], text);
    }
    let e = err(write(&demo(), &product(&[P::AwayReadWrite]), S, json!({"eta": {}})));
    assert_eq!(e["error"], "No write permission(s) for field(s): eta");
}

// ---- several devices in one request ----

#[test]
fn a_collection_write_applies_to_every_device_or_none() {
    let body = json!({HP: {"target_temperature_f": 71}, HO: {"target_temperature_f": 72}});
    let h = write(&demo(), &all(), "/devices/thermostats", body).unwrap();
    assert_eq!(thermostat(&h, HP)["target_temperature_f"], json!(71));
    assert_eq!(thermostat(&h, HO)["target_temperature_f"], json!(72));
    // One bad device refuses the whole request.
    let body = json!({HP: {"target_temperature_f": 71}, HO: {"hvac_mode": "cool"}});
    let e = err(write(&demo(), &all(), "/devices/thermostats", body));
    assert_eq!(e["error"], "Cannot change HVAC mode to cool: HVAC cannot cool");
}

#[test]
fn a_write_spanning_structures_is_refused() {
    let a = demo();
    let other = DemoIds {
        structure_id: "s2".into(),
        heat_pump_thermostat: "t-s2".into(),
        heat_only_thermostat: "t2-s2".into(),
        kitchen_protect: "p-s2".into(),
        hallway_protect: "p2-s2".into(),
        camera: "c-s2".into(),
    };
    let b = demo_home(&other, now());
    let body = json!({HP: {"target_temperature_f": 71}, "t-s2": {"target_temperature_f": 72}});
    let e = plan_write(&Location::parse("/devices/thermostats").unwrap(), &body, [&a, &b]).unwrap_err();
    assert_eq!(e.kind, crate::error::ErrorKind::Invalid);
    assert_eq!(e.error, "A write may change only one structure at a time");
}

#[test]
fn a_refused_write_changes_nothing() {
    let h = demo();
    let before = h.clone();
    let _ = write(&h, &all(), T_HP, json!({"target_temperature_f": 71, "hvac_mode": "cool"}));
    assert_eq!(h, before);
}

// ---- product data and wheres ----

#[test]
fn product_data_is_stored_and_listed_on_the_structure() {
    let body = json!({
        "identification": {"device_id": "pd1", "serial_number": "1L090B50230"},
        "location": {"structure_id": SID},
        "resource_use": {"electricity": {"value": 42.789, "measurement_reset_time": "2016-01-01T01:01:01.000Z", "measurement_time": "2016-01-01T01:02:35.000Z"}}
    });
    let h = write(&demo(), &product(&[P::ProductDataReadWrite]), "/devices/acme_lighting/lighting/pd1", body)
        .unwrap();
    assert_eq!(h.structure()["devices"], json!({"acme_lighting": {"lighting": ["pd1"]}}));
    let e = err(write(
        &demo(),
        &product(&[P::ThermostatReadWrite]),
        "/devices/acme_lighting/lighting/pd1",
        json!({"location": {"structure_id": SID}}),
    ));
    assert_eq!(e["error"], "No write permission(s) for field(s): location");
    let e = err(write(
        &demo(),
        &all(),
        "/devices/acme_lighting/lighting/pd2",
        json!({"software": {"version": "1"}}),
    ));
    assert_eq!(e["error"], "Invalid content sent");
    let deep =
        json!({"location": {"structure_id": SID}, "x": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}});
    let e = err(write(&demo(), &all(), "/devices/acme_lighting/lighting/pd3", deep));
    assert_eq!(e["message"], "Invalid content sent: product data is nested too deeply");
}

#[test]
fn a_custom_where_is_created_once() {
    let h = write(
        &demo(),
        &product(&[P::ProductDataReadWrite]),
        "/structures/demo-structure/wheres",
        json!({"name": "Sunroom"}),
    )
    .unwrap();
    let id = crate::rules::where_id_for("Sunroom");
    assert_eq!(h.structure()["wheres"][&id], json!({"where_id": id, "name": "Sunroom"}));
    let again = write(&h, &all(), "/structures/demo-structure/wheres", json!({"name": "Sunroom"})).unwrap();
    assert_eq!(again, h);
    let e = err(write(&h, &all(), "/structures/demo-structure/wheres", json!({"name": ""})));
    assert_eq!(e["details"]["field_name"], "wheres");
}
