//! Permission subsets × fields on the running server: GET and the first stream event never
//! show a field the grant does not show (and show every one it does); a write is refused with
//! "No write permission" exactly when the grant does not allow that field.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use roost_model::schema::{self, Entity};
use roost_model::{Actor, PermissionSet, write::may_write};
use serde_json::{Map, Value, json};

use crate::helpers::TestApp;
use crate::streams::Events;

fn issue(app: &TestApp, perms: PermissionSet) -> String {
    let list = if perms.is_empty() { String::new() } else { perms.to_list().join(",") };
    let v =
        app.admin(&["token", "issue", "--user", app.demo["login"].as_str().unwrap(), "--permissions", &list]);
    v["access_token"].as_str().unwrap().to_string()
}

/// Every shown field has a row that the permissions show.
fn check_shown(entity: Entity, prefix: &str, shown: &Map<String, Value>, perms: PermissionSet) {
    for (k, v) in shown {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
        let spec = schema::field(entity, &path).unwrap_or_else(|| panic!("{path} shown without a row"));
        assert!(spec.read.intersects(perms), "{path} shown to {perms:?}");
        if schema::has_members(entity, &path) {
            check_shown(entity, &path, v.as_object().unwrap(), perms);
        }
    }
}

fn check_view(view: &Value, full: &Value, perms: PermissionSet) {
    for kind in Entity::DEVICE_KINDS {
        let coll = kind.collection().unwrap();
        for (id, d) in full["devices"][coll].as_object().unwrap() {
            let shown = view
                .get("devices")
                .and_then(|v| v.get(coll))
                .and_then(|v| v.get(id))
                .and_then(Value::as_object);
            if let Some(shown) = shown {
                check_shown(kind, "", shown, perms);
            }
            // Every field the permissions show is there.
            for k in d.as_object().unwrap().keys() {
                let visible = schema::field(kind, k).is_some_and(|s| s.read.intersects(perms));
                assert_eq!(shown.is_some_and(|s| s.contains_key(k)), visible, "{coll}/{k} for {perms:?}");
            }
        }
    }
    for (sid, s) in full["structures"].as_object().unwrap() {
        let shown = view.get("structures").and_then(|v| v.get(sid)).and_then(Value::as_object);
        if let Some(shown) = shown {
            check_shown(Entity::Structure, "", shown, perms);
        }
        for k in s.as_object().unwrap().keys() {
            let visible = schema::field(Entity::Structure, k).is_some_and(|f| f.read.intersects(perms));
            assert_eq!(shown.is_some_and(|x| x.contains_key(k)), visible, "structure/{k} for {perms:?}");
        }
    }
}

#[tokio::test]
async fn reads_streams_and_writes_follow_the_grant_exactly() {
    let app = TestApp::spawn().await;
    let full: Value = app.get_json("/").await.1;
    let thermostat = app.id("heat_pump_thermostat");
    let camera = app.id("camera");
    let structure = app.id("structure_id");
    // Writes to try: (location, body, entity, field).
    let writes: Vec<(String, Value, Entity, &str)> = vec![
        (
            format!("/devices/thermostats/{thermostat}"),
            json!({"target_temperature_f": 69}),
            Entity::Thermostat,
            "target_temperature_f",
        ),
        (format!("/devices/thermostats/{thermostat}"), json!({"label": "den"}), Entity::Thermostat, "label"),
        (format!("/devices/cameras/{camera}"), json!({"is_streaming": true}), Entity::Camera, "is_streaming"),
        (format!("/structures/{structure}"), json!({"away": "home"}), Entity::Structure, "away"),
        (format!("/structures/{structure}"), json!({"name": "Demo Home"}), Entity::Structure, "name"),
        (
            format!("/devices/thermostats/{thermostat}"),
            json!({"ambient_temperature_f": 70}),
            Entity::Thermostat,
            "ambient_temperature_f",
        ),
    ];
    let mut runner = TestRunner::new(Config { cases: 24, ..Config::default() });
    let strategy = (0u32..(1 << roost_model::Permission::ALL.len())).prop_map(PermissionSet::from_bits);
    let cases: Vec<PermissionSet> =
        (0..24).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    for perms in cases.into_iter().chain([PermissionSet::EMPTY, PermissionSet::all()]) {
        let token = issue(&app, perms);
        let view: Value = app
            .client
            .get(format!("{}/", app.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        check_view(&view, &full, perms);
        // The stream's first put shows the same.
        let mut events = Events::open_as(&app, &token, "/").await;
        let (_, _, streamed) = events.next_data().await;
        check_view(&streamed, &full, perms);
        for (path, body, entity, field) in &writes {
            let r = app
                .client
                .put(format!("{}{path}", app.url))
                .bearer_auth(&token)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            let allowed =
                may_write(*entity, field, &Actor::Product { permissions: perms }, Some(&thermostat));
            let refused_for_permission =
                v["error"].as_str().is_some_and(|e| e.starts_with("No write permission"));
            assert_eq!(!refused_for_permission, allowed, "{field} with {perms:?}: {status} {v}");
        }
    }
}
