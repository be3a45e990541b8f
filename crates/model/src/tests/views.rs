//! Views: golden output of the demo, the §1.11 sample shape, filtering.

use serde_json::{Value, json};

use super::*;
use crate::permission::Permission as P;
use crate::view::{Metadata, assemble_view};

fn md() -> Metadata {
    Metadata { access_token: "c.demo".into(), client_version: 1, user_id: "z.1.1.demo".into() }
}

/// The full demo view is checked in; `UPDATE_GOLDEN=1 cargo test` rewrites it after an
/// intended change (review the diff).
#[test]
fn golden_demo_view() {
    let view = assemble_view([&demo()], PermissionSet::all(), &md());
    let text = serde_json::to_string_pretty(&view).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tests/golden_demo_view.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    assert_eq!(text, golden, "the demo view changed; rerun with UPDATE_GOLDEN=1 if intended");
}

/// The keys of the simulator sample document (docs/compatibility.md §1).
const SAMPLE_THERMOSTAT: &[&str] = &[
    "humidity",
    "locale",
    "temperature_scale",
    "is_using_emergency_heat",
    "has_fan",
    "software_version",
    "has_leaf",
    "where_id",
    "device_id",
    "name",
    "can_heat",
    "can_cool",
    "target_temperature_c",
    "target_temperature_f",
    "target_temperature_high_c",
    "target_temperature_high_f",
    "target_temperature_low_c",
    "target_temperature_low_f",
    "ambient_temperature_c",
    "ambient_temperature_f",
    "away_temperature_high_c",
    "away_temperature_high_f",
    "away_temperature_low_c",
    "away_temperature_low_f",
    "eco_temperature_high_c",
    "eco_temperature_high_f",
    "eco_temperature_low_c",
    "eco_temperature_low_f",
    "is_locked",
    "locked_temp_min_c",
    "locked_temp_min_f",
    "locked_temp_max_c",
    "locked_temp_max_f",
    "sunlight_correction_active",
    "sunlight_correction_enabled",
    "structure_id",
    "fan_timer_active",
    "fan_timer_timeout",
    "fan_timer_duration",
    "previous_hvac_mode",
    "hvac_mode",
    "time_to_target",
    "time_to_target_training",
    "where_name",
    "label",
    "name_long",
    "is_online",
    "hvac_state",
];
const SAMPLE_PROTECT: &[&str] = &[
    "name",
    "locale",
    "structure_id",
    "software_version",
    "where_id",
    "device_id",
    "where_name",
    "name_long",
    "is_online",
    "battery_health",
    "co_alarm_state",
    "smoke_alarm_state",
    "ui_color_state",
    "is_manual_test_active",
    "last_manual_test_time",
];
const SAMPLE_CAMERA: &[&str] = &[
    "name",
    "software_version",
    "where_id",
    "device_id",
    "structure_id",
    "is_online",
    "is_streaming",
    "is_audio_input_enabled",
    "last_is_online_change",
    "is_video_history_enabled",
    "is_public_share_enabled",
    "snapshot_url",
    "activity_zones",
    "where_name",
    "name_long",
    "web_url",
    "app_url",
];
const SAMPLE_STRUCTURE: &[&str] = &[
    "smoke_co_alarms",
    "name",
    "country_code",
    "time_zone",
    "away",
    "thermostats",
    "structure_id",
    "co_alarm_state",
    "smoke_alarm_state",
    "wwn_security_state",
    "wheres",
    "cameras",
];

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn demo_view_has_the_sample_document_shape() {
    let view = assemble_view([&demo()], PermissionSet::all(), &md());
    let top: Vec<_> = keys(&view);
    assert_eq!(top, ["devices", "metadata", "structures"]);
    for (coll, id, sample) in [
        ("thermostats", HP, SAMPLE_THERMOSTAT),
        ("smoke_co_alarms", P1, SAMPLE_PROTECT),
        ("cameras", CAM, SAMPLE_CAMERA),
    ] {
        let have = keys(&view["devices"][coll][id]);
        for k in sample {
            assert!(have.contains(&k.to_string()), "{coll} lacks {k}");
        }
        // Collections are objects keyed by id; the key is the device_id.
        assert_eq!(view["devices"][coll][id]["device_id"], json!(id));
    }
    let have = keys(&view["structures"][SID]);
    for k in SAMPLE_STRUCTURE {
        assert!(have.contains(&k.to_string()), "structure lacks {k}");
    }
    assert!(view["structures"][SID].get("eta").is_none(), "eta is write-only");
    assert!(view["structures"][SID]["thermostats"].is_array());
    assert_eq!(
        view["metadata"],
        json!({"access_token": "c.demo", "client_version": 1, "user_id": "z.1.1.demo"})
    );
    // Same JSON types as the sample.
    let t = &view["devices"]["thermostats"][HP];
    assert!(t["target_temperature_f"].is_i64());
    assert!(t["humidity"].is_i64());
    assert!(t["fan_timer_timeout"].is_string());
}

#[test]
fn each_permission_alone_shows_exactly_its_parts() {
    let h = demo();
    let view = |p: P| assemble_view([&h], PermissionSet::of(&[p]), &md());
    let v = view(P::ThermostatRead);
    assert_eq!(keys(&v["devices"]), ["thermostats"]);
    assert!(v["structures"][SID].get("away").is_some());
    assert!(v["structures"][SID].get("postal_code").is_none());
    let v = view(P::SmokeCoRead);
    assert_eq!(keys(&v["devices"]), ["smoke_co_alarms"]);
    assert_eq!(v["structures"][SID]["co_alarm_state"], json!("ok"));
    let v = view(P::PostalCodeRead);
    assert!(v.get("devices").is_none());
    assert_eq!(v["structures"][SID]["postal_code"], json!("94304"));
    assert!(v["structures"][SID].get("away").is_none());
    let v = view(P::EnergyRead);
    assert_eq!(v["structures"][SID]["rhr_enrollment"], json!(false));
    let v = view(P::SecurityStateRead);
    assert_eq!(v["structures"][SID]["wwn_security_state"], json!("ok"));
    assert!(v["structures"][SID].get("thermostats").is_none());
    let v = view(P::CameraRead);
    let cam = &v["devices"]["cameras"][CAM];
    assert!(cam.get("snapshot_url").is_none() && cam.get("activity_zones").is_none());
    assert!(cam["last_event"].get("image_url").is_none());
    assert_eq!(cam["last_event"]["has_motion"], json!(true));
    let v = view(P::CameraReadWriteImages);
    assert!(v["devices"]["cameras"][CAM]["last_event"]["activity_zone_ids"].is_array());
}
