//! What a token sees: the view (its homes, filtered field by field by its permissions, plus
//! `metadata`), the value at any data location in it, and which structures a location reads.
//!
//! Filtering is an allow-list driven by the schema table: a field without a row, or whose row
//! does not name one of the grant's permissions, is never shown. Reads compute only the part
//! of the view they need (one device, one field, one product type), not the whole view.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::fields::FieldMap;
use crate::home::{DEVICE_COLLECTIONS, Home, object_entry};
use crate::location::Location;
use crate::permission::PermissionSet;
use crate::schema::{self, Entity, FieldType, PRODUCT_DATA};

/// One committed revision of a structure.
#[derive(Debug)]
pub struct Snapshot {
    pub revision: u64,
    pub home: Home,
}

/// Who is looking: a grant's permissions, or a device's own credential (which sees only its
/// own element, every field but internal ones).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub permissions: PermissionSet,
    pub device_id: Option<&'a str>,
}

/// The value at a location in the viewer's view of `snaps`, computing only the part it needs.
pub fn read_location(
    snaps: &[Arc<Snapshot>],
    viewer: Viewer<'_>,
    metadata: &Metadata,
    location: &Location,
) -> Option<Value> {
    if let Some(device_id) = viewer.device_id {
        return location.resolve(&device_view(snaps, device_id)?).cloned();
    }
    let seg = location.segments();
    let perms = viewer.permissions;
    match (seg.first().map(String::as_str), seg.len()) {
        (Some("devices"), n) if n >= 3 => {
            if let Some(kind) = Entity::from_collection(&seg[1]) {
                let device = snaps.iter().find_map(|s| s.home.device(kind, &seg[2]))?;
                let filtered = match seg.get(3) {
                    // One field: filter just that one instead of the whole device.
                    Some(field) => {
                        let mut one = FieldMap::new();
                        one.insert(field.as_str(), device.get(field)?.clone());
                        Value::Object(filter_device(kind, &one, perms)?)
                    }
                    None => Value::Object(filter_device(kind, device, perms)?),
                };
                return Location::from_segments(seg[3..].iter().cloned()).resolve(&filtered).cloned();
            }
            // Product data: just that product type, not the whole view (a stream of one
            // product's data computes this on every change of the home).
            let items = product_type_view(snaps.iter().map(|s| &s.home), perms, &seg[1], &seg[2])?;
            return Location::from_segments(seg[3..].iter().cloned()).resolve(&Value::Object(items)).cloned();
        }
        (Some("structures"), n) if n >= 2 => {
            let snap = snaps.iter().find(|s| s.home.id() == seg[1])?;
            let filtered = Value::Object(filter_structure(snap.home.structure(), perms)?);
            return Location::from_segments(seg[2..].iter().cloned()).resolve(&filtered).cloned();
        }
        (Some("metadata"), _) => {
            return Location::from_segments(seg[1..].iter().cloned()).resolve(&metadata.to_json()).cloned();
        }
        _ => {}
    }
    let view = assemble_view(snaps.iter().map(|s| &s.home), perms, metadata);
    location.resolve(&view).cloned()
}

/// What a device's own credential sees: its own element, every field but internal ones, at
/// its usual place (`/devices/<kind>/<id>`).
fn device_view(snaps: &[Arc<Snapshot>], device_id: &str) -> Option<Value> {
    let (kind, fields) = snaps.iter().find_map(|s| {
        let kind = s.home.device_kind(device_id)?;
        Some((kind, s.home.device(kind, device_id)?))
    })?;
    let shown = filter_device(kind, fields, PermissionSet::all())?;
    Some(serde_json::json!({"devices": {kind.collection()?: {device_id: shown}}}))
}

/// The structures a location reads from: one when it names an element, else all.
pub fn covered<'s>(location: &Location, snaps: &'s [Arc<Snapshot>]) -> Vec<&'s Arc<Snapshot>> {
    let seg = location.segments();
    let one = match (seg.first().map(String::as_str), seg.len()) {
        (Some("devices"), n) if n >= 3 => match Entity::from_collection(&seg[1]) {
            Some(kind) => snaps.iter().find(|s| s.home.device(kind, &seg[2]).is_some()),
            None => snaps.iter().find(|s| {
                s.home
                    .product_data()
                    .iter()
                    .any(|(c, t, i, _)| *c == seg[1] && *t == seg[2] && seg.get(3) == Some(i))
            }),
        },
        (Some("structures"), n) if n >= 2 => snaps.iter().find(|s| s.home.id() == seg[1]),
        _ => None,
    };
    match one {
        Some(s) => vec![s],
        None => snaps.iter().collect(),
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
pub fn filter_device(kind: Entity, device: &FieldMap, perms: PermissionSet) -> Option<Map<String, Value>> {
    let out = filter_fields(kind, "", &mut device.iter().map(|(k, v)| (k.as_str(), v)), perms);
    (!out.is_empty()).then_some(out)
}

/// Filters the structure object by a permission set. `None` when the set shows nothing of it.
pub fn filter_structure(structure: &FieldMap, perms: PermissionSet) -> Option<Map<String, Value>> {
    let out =
        filter_fields(Entity::Structure, "", &mut structure.iter().map(|(k, v)| (k.as_str(), v)), perms);
    (!out.is_empty()).then_some(out)
}

fn filter_fields(
    entity: Entity,
    prefix: &str,
    fields: &mut dyn Iterator<Item = (&str, &Value)>,
    perms: PermissionSet,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in fields {
        let path;
        let key = if prefix.is_empty() {
            k
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
        match (spec.ty == FieldType::Object && schema::has_members(entity, key), v) {
            (true, Value::Object(inner)) => {
                let mut members = inner.iter().map(|(k, v)| (k.as_str(), v));
                out.insert(k.to_string(), Value::Object(filter_fields(entity, key, &mut members, perms)));
            }
            _ => {
                out.insert(k.to_string(), v.clone());
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
            devices.insert(kind.collection().unwrap_or_default().to_string(), Value::Object(coll));
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

/// `devices.<company>.<product_type>` of the view of `homes` (product data), without building
/// the rest of the view: what a read or stream of one product's data needs. `None` where the
/// view has nothing there.
pub fn product_type_view<'h>(
    homes: impl IntoIterator<Item = &'h Home>,
    perms: PermissionSet,
    company: &str,
    product_type: &str,
) -> Option<Map<String, Value>> {
    if !perms.intersects(PRODUCT_DATA) || DEVICE_COLLECTIONS.contains(&company) {
        return None;
    }
    let mut merged: Option<Map<String, Value>> = None;
    for home in homes {
        if let Some(Value::Object(items)) = home.products().get(company).and_then(|t| t.get(product_type))
            && !items.is_empty()
        {
            merge_into(merged.get_or_insert_with(Map::new), items.clone());
        }
    }
    merged
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

    use crate::tests::small_home as home;

    #[test]
    fn collections_without_permission_are_absent() {
        let v = filter_home(&home(), PermissionSet::of(&[P::ThermostatRead]));
        let devices = v["devices"].as_object().unwrap();
        assert!(devices.contains_key("thermostats"));
        assert!(!devices.contains_key("cameras"));
        assert!(!devices.contains_key("smoke_co_alarms"));
        assert_eq!(v["devices"]["thermostats"]["t1"], json!({"device_id": "t1", "hvac_mode": "heat"}));
    }

    #[test]
    fn camera_images_only_with_images() {
        let plain = filter_home(&home(), PermissionSet::of(&[P::CameraRead]));
        assert_eq!(
            plain["devices"]["cameras"]["c1"],
            json!({"device_id": "c1", "last_event": {"has_person": true}})
        );
        let img = filter_home(&home(), PermissionSet::of(&[P::CameraReadImages]));
        assert_eq!(img["devices"]["cameras"]["c1"]["last_event"]["image_url"], json!("i"));
        assert_eq!(img["devices"]["cameras"]["c1"]["snapshot_url"], json!("u"));
    }

    #[test]
    fn no_permission_sees_only_metadata() {
        let md = Metadata { access_token: "c.x".into(), client_version: 1, user_id: "z.1".into() };
        let v = assemble_view([&home()], PermissionSet::EMPTY, &md);
        assert_eq!(v, json!({"metadata": {"access_token": "c.x", "client_version": 1, "user_id": "z.1"}}));
    }

    /// The shortcut for product data gives what the whole view has at that place.
    #[test]
    fn product_type_view_is_the_views_subtree() {
        let mut a = home();
        a.product_data_mut("acme", "meter").insert("m1".into(), json!({"kwh": 1}));
        a.product_data_mut("acme", "meter").insert("m2".into(), json!({"kwh": 2}));
        a.product_data_mut("acme", "empty");
        let mut b = Home::new_structure("s2", Map::new());
        b.product_data_mut("acme", "meter").insert("m3".into(), json!({"kwh": 3}));
        let metadata = Metadata { access_token: "t".into(), client_version: 1, user_id: "u".into() };
        for perms in [PermissionSet::of(&[P::ProductDataReadWrite]), PermissionSet::of(&[P::ThermostatRead])]
        {
            let view = assemble_view([&a, &b], perms, &metadata);
            for (company, ty) in [("acme", "meter"), ("acme", "empty"), ("acme", "none"), ("other", "meter")]
            {
                let expected =
                    view.pointer(&format!("/devices/{company}/{ty}")).and_then(Value::as_object).cloned();
                assert_eq!(product_type_view([&a, &b], perms, company, ty), expected, "{company}/{ty}");
            }
            // Devices are not product data.
            assert_eq!(product_type_view([&a, &b], perms, "thermostats", "t1"), None);
        }
    }
}
