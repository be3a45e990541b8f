//! The demo home: a heat-pump thermostat with emergency heat on, a heat-only thermostat, two
//! Protects and a camera, with realistic values. Ids come from the caller (the model has no
//! randomness), so tests can fix them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::context::{Actor, RuleConfig, WriteContext};
use crate::home::Home;
use crate::logic;
use crate::schema::Entity;
use crate::units::format_time;

/// Ids of the demo home's parts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoIds {
    pub structure_id: String,
    pub heat_pump_thermostat: String,
    pub heat_only_thermostat: String,
    pub kitchen_protect: String,
    pub hallway_protect: String,
    pub camera: String,
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Builds the demo home as of `now`.
pub fn demo_home(ids: &DemoIds, now: DateTime<Utc>) -> Home {
    let t = format_time(now);
    // The camera's last event: a little before now, so the home starts occupied.
    let event_start = format_time(now - chrono::Duration::minutes(5));
    let event_end = format_time(now - chrono::Duration::minutes(4));
    let event_expires = format_time(now + chrono::Duration::hours(24));
    let wheres = json!({
        "living-room": {"where_id": "living-room", "name": "Living Room"},
        "bedroom": {"where_id": "bedroom", "name": "Bedroom"},
        "kitchen": {"where_id": "kitchen", "name": "Kitchen"},
        "hallway": {"where_id": "hallway", "name": "Hallway"},
        "front-door": {"where_id": "front-door", "name": "Front Door"},
    });
    let mut home = Home::new_structure(
        &ids.structure_id,
        obj(json!({
            "name": "Demo Home",
            "country_code": "US",
            "postal_code": "94304",
            "time_zone": "America/Los_Angeles",
            "rhr_enrollment": false,
            "peak_period_start_time": "1970-01-01T00:00:00.000Z",
            "peak_period_end_time": "1970-01-01T00:00:00.000Z",
            "wheres": wheres,
        })),
    );
    let thermostat = |where_id: &str, label: &str, heat_pump: bool| {
        obj(json!({
            "locale": "en-US", "software_version": "5.9.3", "where_id": where_id, "label": label,
            "last_connection": t, "is_online": true,
            "can_heat": true, "can_cool": heat_pump, "has_fan": heat_pump,
            "is_using_emergency_heat": heat_pump,
            "fan_timer_active": false, "fan_timer_timeout": "1970-01-01T00:00:00.000Z", "fan_timer_duration": 15,
            "has_leaf": false, "temperature_scale": "F",
            "target_temperature_f": 68, "target_temperature_high_f": 76, "target_temperature_low_f": 66,
            "eco_temperature_high_f": 80, "eco_temperature_low_f": 62,
            "ambient_temperature_f": 64, "humidity": 40,
            "hvac_mode": "heat", "previous_hvac_mode": "", "hvac_state": "heating",
            "is_locked": false, "locked_temp_min_f": 65, "locked_temp_max_f": 75,
            "sunlight_correction_enabled": true, "sunlight_correction_active": false,
            "time_to_target": "~15", "time_to_target_training": "ready",
        }))
    };
    home.insert_device(
        Entity::Thermostat,
        &ids.heat_pump_thermostat,
        thermostat("living-room", "Heat pump", true),
    );
    home.insert_device(Entity::Thermostat, &ids.heat_only_thermostat, thermostat("bedroom", "", false));
    let protect = |where_id: &str, label: &str| {
        obj(json!({
            "locale": "en-US", "software_version": "3.1.4", "where_id": where_id, "label": label,
            "last_connection": t, "is_online": true, "battery_health": "ok",
            "co_alarm_state": "ok", "smoke_alarm_state": "ok",
            "is_manual_test_active": false, "last_manual_test_time": "2026-10-01T18:30:00.000Z",
        }))
    };
    home.insert_device(Entity::SmokeCoAlarm, &ids.kitchen_protect, protect("kitchen", "0305"));
    home.insert_device(Entity::SmokeCoAlarm, &ids.hallway_protect, protect("hallway", ""));
    let cam = &ids.camera;
    home.insert_device(
        Entity::Camera,
        cam,
        obj(json!({
            "software_version": "205-600052", "where_id": "front-door", "label": "porch",
            "is_online": true, "is_streaming": true, "is_audio_input_enabled": true,
            "last_is_online_change": t, "is_video_history_enabled": true,
            "web_url": format!("https://roost.local/cameras/{cam}"),
            "app_url": format!("roost://cameras/{cam}"),
            "is_public_share_enabled": false, "public_share_url": "",
            "snapshot_url": format!("https://roost.local/cameras/{cam}/snapshot"),
            "activity_zones": [{"name": "Driveway", "id": 0}, {"name": "Porch", "id": 1}],
            "last_event": {
                "has_sound": false, "has_motion": true, "has_person": false,
                "start_time": event_start, "end_time": event_end,
                "urls_expire_time": event_expires,
                "web_url": format!("https://roost.local/cameras/{cam}/events/1"),
                "app_url": format!("roost://cameras/{cam}/events/1"),
                "image_url": format!("https://roost.local/cameras/{cam}/events/1.jpg"),
                "animated_image_url": format!("https://roost.local/cameras/{cam}/events/1.gif"),
                "activity_zone_ids": ["0"],
            },
        })),
    );
    let before = home.clone();
    let ctx = WriteContext { actor: &Actor::Service, now, config: &RuleConfig::default(), measured_at: None };
    logic::settle_all(&before, &mut home, &ctx);
    // The devices start with what they were built with: nothing for them to apply yet.
    for kind in Entity::DEVICE_KINDS {
        let ids: Vec<String> = home.devices(kind).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(d) = home.device_mut(kind, &id) {
                let intended = d.get("intended_version").cloned().unwrap_or_else(|| Value::from(0));
                d.insert("applied_version", intended);
                d.insert("sync_state", Value::from("synced"));
            }
        }
    }
    home
}
