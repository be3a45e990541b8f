//! Tests of the whole model: each rule's accept and reject with its exact error JSON, home
//! logic, views, golden output and property tests.

mod devices;
mod logic;
mod properties;
mod rules;
mod views;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::context::{Actor, RuleConfig, WriteContext};
use crate::demo::{DemoIds, demo_home};
use crate::error::ApiError;
use crate::home::Home;
use crate::location::Location;
use crate::permission::PermissionSet;
use crate::schema::Entity;
use crate::write::{apply_write, plan_write};

pub const HP: &str = "hp-thermostat";
pub const HO: &str = "ho-thermostat";
pub const P1: &str = "kitchen-protect";
pub const P2: &str = "hallway-protect";
pub const CAM: &str = "front-camera";
pub const SID: &str = "demo-structure";

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

pub fn ids() -> DemoIds {
    DemoIds {
        structure_id: SID.into(),
        heat_pump_thermostat: HP.into(),
        heat_only_thermostat: HO.into(),
        kitchen_protect: P1.into(),
        hallway_protect: P2.into(),
        camera: CAM.into(),
    }
}

/// A home with a thermostat (and a field no schema row names) and a camera with an event.
pub fn small_home() -> Home {
    let mut h = Home::new_structure("s1", serde_json::Map::new());
    let t = json!({"device_id": "t1", "hvac_mode": "heat", "secret_internal": 1});
    h.insert_device(Entity::Thermostat, "t1", t.as_object().unwrap().clone());
    let c =
        json!({"device_id": "c1", "snapshot_url": "u", "last_event": {"has_person": true, "image_url": "i"}});
    h.insert_device(Entity::Camera, "c1", c.as_object().unwrap().clone());
    h
}

pub fn demo() -> Home {
    demo_home(&ids(), now())
}

pub fn all() -> Actor {
    Actor::Product { permissions: PermissionSet::all() }
}

pub fn product(perms: &[crate::Permission]) -> Actor {
    Actor::Product { permissions: PermissionSet::of(perms) }
}

/// One write through the whole path (plan + rules + logic).
pub fn write(home: &Home, actor: &Actor, path: &str, body: Value) -> Result<Home, ApiError> {
    write_at(home, actor, path, body, now())
}

pub fn write_at(
    home: &Home,
    actor: &Actor,
    path: &str,
    body: Value,
    at: DateTime<Utc>,
) -> Result<Home, ApiError> {
    let loc = Location::parse(path)?;
    let plan = plan_write(&loc, &body, [home])?;
    let config = RuleConfig::default();
    let ctx = WriteContext { actor, now: at, config: &config, measured_at: None };
    apply_write(home, &plan, &ctx)
}

/// The error body without its per-call instance.
pub fn err(r: Result<Home, ApiError>) -> Value {
    match r {
        Ok(_) => panic!("write was accepted"),
        Err(e) => {
            let mut j = e.to_json("i");
            j.as_object_mut().unwrap().remove("instance");
            j.as_object_mut().unwrap().insert("kind".into(), json!(e.kind.as_str()));
            j
        }
    }
}

pub fn thermostat(h: &Home, id: &str) -> serde_json::Map<String, Value> {
    h.device(Entity::Thermostat, id).unwrap().to_map()
}

pub fn ty(anchor: &str) -> String {
    format!("{}{anchor}", crate::error::TYPE_BASE)
}

/// Applies a service write (admin or device reality) that is known to be valid.
pub fn service(h: &Home, path: &str, body: Value) -> Home {
    write(h, &Actor::Service, path, body).unwrap()
}
