//! One structure's document ([`Home`]) and the view a token sees ([`assemble_view`]).
//!
//! A structure is the unit of storage, locking and versioning, so each [`Home`] holds the
//! structure and everything in it, already in the Nest shape:
//! `{"devices": {"thermostats": {id: …}, …, "$company": {"$type": {id: …}}}, "structures": {id: …}}`.
//! A user's view is the union of their homes, filtered by the grant's permissions, plus
//! `metadata`. Filtering is an allow-list driven by the schema table: a field without a row,
//! or whose row does not name one of the grant's permissions, is never shown.

use serde_json::{Map, Value};

use crate::permission::PermissionSet;
use crate::schema::{self, Entity, FieldType, PRODUCT_DATA};

/// The document of one structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    id: String,
    doc: Value,
}

/// Device kinds that are not product data.
const DEVICE_COLLECTIONS: [&str; 3] = ["thermostats", "smoke_co_alarms", "cameras"];

impl Home {
    /// An empty structure with its defaults (`name` "Home", `away` "home", states "ok").
    pub fn new_structure(id: &str, fields: Map<String, Value>) -> Home {
        let mut s = Map::new();
        s.insert("structure_id".into(), Value::from(id));
        s.insert("name".into(), Value::from("Home"));
        s.insert("away".into(), Value::from("home"));
        s.insert("country_code".into(), Value::from("US"));
        s.insert("time_zone".into(), Value::from("America/Los_Angeles"));
        s.insert("co_alarm_state".into(), Value::from("ok"));
        s.insert("smoke_alarm_state".into(), Value::from("ok"));
        s.insert("wwn_security_state".into(), Value::from("ok"));
        s.insert("eta_begin".into(), Value::from(crate::units::EPOCH));
        s.insert("wheres".into(), Value::Object(Map::new()));
        for (k, v) in fields {
            s.insert(k, v);
        }
        let mut structures = Map::new();
        structures.insert(id.to_string(), Value::Object(s));
        let mut doc = Map::new();
        doc.insert("devices".into(), Value::Object(Map::new()));
        doc.insert("structures".into(), Value::Object(structures));
        Home {
            id: id.to_string(),
            doc: Value::Object(doc),
        }
    }

    /// Rebuilds a home from its stored JSON; `None` if the shape is not a home's.
    pub fn from_json(id: &str, doc: Value) -> Option<Home> {
        let ok = doc.get("devices").is_some_and(Value::is_object)
            && doc
                .get("structures")
                .and_then(|s| s.get(id))
                .is_some_and(Value::is_object);
        ok.then(|| Home {
            id: id.to_string(),
            doc,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn as_json(&self) -> &Value {
        &self.doc
    }

    pub fn into_json(self) -> Value {
        self.doc
    }

    pub fn structure(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.doc
            .get("structures")
            .and_then(|s| s.get(&self.id))
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY)
    }

    pub fn structure_mut(&mut self) -> &mut Map<String, Value> {
        let id = self.id.clone();
        let structures = object_entry(root_mut(&mut self.doc), "structures");
        object_entry(structures, &id)
    }

    fn devices_root(&self) -> Option<&Map<String, Value>> {
        self.doc.get("devices").and_then(Value::as_object)
    }

    /// The devices of one kind, by id.
    pub fn devices(&self, kind: Entity) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
        kind.collection()
            .and_then(|c| self.devices_root()?.get(c))
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.iter().filter_map(|(k, v)| Some((k, v.as_object()?))))
    }

    pub fn device(&self, kind: Entity, id: &str) -> Option<&Map<String, Value>> {
        self.devices_root()?
            .get(kind.collection()?)?
            .get(id)?
            .as_object()
    }

    pub fn device_mut(&mut self, kind: Entity, id: &str) -> Option<&mut Map<String, Value>> {
        let c = kind.collection()?;
        self.doc
            .get_mut("devices")?
            .get_mut(c)?
            .get_mut(id)?
            .as_object_mut()
    }

    /// Adds or replaces a device.
    pub fn insert_device(&mut self, kind: Entity, id: &str, fields: Map<String, Value>) {
        let Some(c) = kind.collection() else { return };
        let devices = object_entry(root_mut(&mut self.doc), "devices");
        object_entry(devices, c).insert(id.to_string(), Value::Object(fields));
    }

    /// Removes a device; drops its collection when it becomes empty.
    pub fn remove_device(&mut self, kind: Entity, id: &str) -> bool {
        let Some(c) = kind.collection() else {
            return false;
        };
        let Some(devices) = self.doc.get_mut("devices").and_then(Value::as_object_mut) else {
            return false;
        };
        let removed = devices
            .get_mut(c)
            .and_then(Value::as_object_mut)
            .is_some_and(|m| m.remove(id).is_some());
        if devices
            .get(c)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            devices.remove(c);
        }
        removed
    }

    /// Which kind of device `id` is, if it is in this home.
    pub fn device_kind(&self, id: &str) -> Option<Entity> {
        Entity::DEVICE_KINDS
            .into_iter()
            .find(|k| self.device(*k, id).is_some())
    }

    /// Every device id in this home, with its kind.
    pub fn device_ids(&self) -> Vec<(Entity, String)> {
        Entity::DEVICE_KINDS
            .into_iter()
            .flat_map(|k| self.devices(k).map(move |(id, _)| (k, id.clone())))
            .collect()
    }

    /// Product data: `(company, product_type, id, value)` for every entry.
    pub fn product_data(&self) -> Vec<(String, String, String, &Value)> {
        let mut out = Vec::new();
        for (company, types) in self.devices_root().into_iter().flatten() {
            if DEVICE_COLLECTIONS.contains(&company.as_str()) {
                continue;
            }
            for (ty, ids) in types.as_object().into_iter().flatten() {
                for (id, v) in ids.as_object().into_iter().flatten() {
                    out.push((company.clone(), ty.clone(), id.clone(), v));
                }
            }
        }
        out
    }

    pub fn product_data_mut(&mut self, company: &str, ty: &str) -> &mut Map<String, Value> {
        let devices = object_entry(root_mut(&mut self.doc), "devices");
        object_entry(object_entry(devices, company), ty)
    }

    /// True when any Protect in the home reports a smoke or CO emergency: the HVAC is in
    /// safety shutoff.
    pub fn safety_shutoff(&self) -> bool {
        self.devices(Entity::SmokeCoAlarm).any(|(_, p)| {
            p.get("co_alarm_state").and_then(Value::as_str) == Some("emergency")
                || p.get("smoke_alarm_state").and_then(Value::as_str) == Some("emergency")
        })
    }
}

fn root_mut(doc: &mut Value) -> &mut Map<String, Value> {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    match doc {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

/// The object at `key`, created (or replacing a non-object) when missing.
pub(crate) fn object_entry<'m>(
    m: &'m mut Map<String, Value>,
    key: &str,
) -> &'m mut Map<String, Value> {
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("made an object just above"),
    }
}

/// What `/metadata` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub access_token: String,
    pub client_version: u64,
    pub user_id: String,
}

impl Metadata {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "access_token": self.access_token,
            "client_version": self.client_version,
            "user_id": self.user_id,
        })
    }
}

/// Filters one device's fields by a permission set. `None` when the set shows nothing of it.
pub fn filter_device(
    kind: Entity,
    device: &Map<String, Value>,
    perms: PermissionSet,
) -> Option<Map<String, Value>> {
    let out = filter_fields(kind, "", device, perms);
    (!out.is_empty()).then_some(out)
}

/// Filters the structure object by a permission set. `None` when the set shows nothing of it.
pub fn filter_structure(
    structure: &Map<String, Value>,
    perms: PermissionSet,
) -> Option<Map<String, Value>> {
    let out = filter_fields(Entity::Structure, "", structure, perms);
    (!out.is_empty()).then_some(out)
}

fn filter_fields(
    entity: Entity,
    prefix: &str,
    fields: &Map<String, Value>,
    perms: PermissionSet,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in fields {
        let path;
        let key = if prefix.is_empty() {
            k.as_str()
        } else {
            path = format!("{prefix}/{k}");
            path.as_str()
        };
        let Some(spec) = schema::field(entity, key) else {
            continue;
        };
        if !spec.read.intersects(perms) {
            continue;
        }
        match (
            spec.ty == FieldType::Object && schema::has_members(entity, key),
            v,
        ) {
            (true, Value::Object(inner)) => {
                out.insert(
                    k.clone(),
                    Value::Object(filter_fields(entity, key, inner, perms)),
                );
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Filters a whole home into the partial Nest tree a permission set sees:
/// `{"devices": {...}, "structures": {...}}` with absent (not empty) collections.
pub fn filter_home(home: &Home, perms: PermissionSet) -> Map<String, Value> {
    let mut devices = Map::new();
    for kind in Entity::DEVICE_KINDS {
        let mut coll = Map::new();
        for (id, d) in home.devices(kind) {
            if let Some(f) = filter_device(kind, d, perms) {
                coll.insert(id.clone(), Value::Object(f));
            }
        }
        if !coll.is_empty() {
            devices.insert(
                kind.collection().unwrap_or_default().to_string(),
                Value::Object(coll),
            );
        }
    }
    if perms.intersects(PRODUCT_DATA) {
        for (company, ty, id, v) in home.product_data() {
            let types = object_entry(&mut devices, &company);
            object_entry(types, &ty).insert(id, v.clone());
        }
    }
    let mut out = Map::new();
    if !devices.is_empty() {
        out.insert("devices".into(), Value::Object(devices));
    }
    if let Some(s) = filter_structure(home.structure(), perms) {
        let mut structures = Map::new();
        structures.insert(home.id().to_string(), Value::Object(s));
        out.insert("structures".into(), Value::Object(structures));
    }
    out
}

/// The view of a token: its homes filtered by its permissions, merged, plus `metadata`.
pub fn assemble_view<'h>(
    homes: impl IntoIterator<Item = &'h Home>,
    perms: PermissionSet,
    metadata: &Metadata,
) -> Value {
    let mut view = Map::new();
    for home in homes {
        merge_into(&mut view, filter_home(home, perms));
    }
    view.insert("metadata".into(), metadata.to_json());
    Value::Object(view)
}

/// Deep union of two trees whose leaves never collide (distinct homes have distinct ids).
fn merge_into(target: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        match (target.get_mut(&k), v) {
            (Some(Value::Object(t)), Value::Object(s)) => merge_into(t, s),
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Permission as P;
    use serde_json::json;

    fn home() -> Home {
        let mut h = Home::new_structure("s1", Map::new());
        let t = json!({"device_id": "t1", "hvac_mode": "heat", "secret_internal": 1});
        h.insert_device(Entity::Thermostat, "t1", t.as_object().unwrap().clone());
        let c = json!({"device_id": "c1", "snapshot_url": "u", "last_event": {"has_person": true, "image_url": "i"}});
        h.insert_device(Entity::Camera, "c1", c.as_object().unwrap().clone());
        h
    }

    #[test]
    fn collections_without_permission_are_absent() {
        let v = filter_home(&home(), PermissionSet::of(&[P::ThermostatRead]));
        let devices = v["devices"].as_object().unwrap();
        assert!(devices.contains_key("thermostats"));
        assert!(!devices.contains_key("cameras"));
        assert!(!devices.contains_key("smoke_co_alarms"));
        assert_eq!(
            v["devices"]["thermostats"]["t1"],
            json!({"device_id": "t1", "hvac_mode": "heat"})
        );
    }

    #[test]
    fn camera_images_only_with_images() {
        let plain = filter_home(&home(), PermissionSet::of(&[P::CameraRead]));
        assert_eq!(
            plain["devices"]["cameras"]["c1"],
            json!({"device_id": "c1", "last_event": {"has_person": true}})
        );
        let img = filter_home(&home(), PermissionSet::of(&[P::CameraReadImages]));
        assert_eq!(
            img["devices"]["cameras"]["c1"]["last_event"]["image_url"],
            json!("i")
        );
        assert_eq!(img["devices"]["cameras"]["c1"]["snapshot_url"], json!("u"));
    }

    #[test]
    fn no_permission_sees_only_metadata() {
        let md = Metadata {
            access_token: "c.x".into(),
            client_version: 1,
            user_id: "z.1".into(),
        };
        let v = assemble_view([&home()], PermissionSet::EMPTY, &md);
        assert_eq!(
            v,
            json!({"metadata": {"access_token": "c.x", "client_version": 1, "user_id": "z.1"}})
        );
    }

    #[test]
    fn removing_the_last_device_drops_the_collection() {
        let mut h = home();
        assert!(h.remove_device(Entity::Thermostat, "t1"));
        assert!(h.as_json()["devices"].get("thermostats").is_none());
        assert!(!h.remove_device(Entity::Thermostat, "t1"));
    }
}
