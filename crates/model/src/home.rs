//! One structure's document ([`Home`]). What a token sees of it is [`crate::view`].
//!
//! A structure is the unit of storage, locking and versioning, so each [`Home`] holds the
//! structure and everything in it, already in the Nest shape:
//! `{"devices": {"thermostats": {id: …}, …, "$company": {"$type": {id: …}}}, "structures": {id: …}}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::fields::FieldMap;
use crate::location::Location;
use crate::schema::Entity;

/// Fields of one element (a device or the structure), shared between revisions.
pub type Fields = Arc<FieldMap>;

/// The document of one structure.
///
/// Elements are held behind `Arc`s, so a new revision shares every element the write did not
/// touch with the previous one: cloning a home, comparing two revisions and dropping an old
/// one cost little more than the elements that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Home {
    id: String,
    structure: Fields,
    /// Thermostats, Protects and cameras (in `Entity::DEVICE_KINDS` order), by id.
    devices: [BTreeMap<String, Fields>; 3],
    /// Product data: `{"$company": {"$product_type": {id: {...}}}}`.
    products: Fields,
}

/// One element in two revisions: `(location, old, new)`; `None` where it is absent.
pub type ElementPair<'a> = (Location, Option<&'a FieldMap>, Option<&'a FieldMap>);

/// Device kinds that are not product data.
pub(crate) const DEVICE_COLLECTIONS: [&str; 3] = ["thermostats", "smoke_co_alarms", "cameras"];

fn kind_index(kind: Entity) -> Option<usize> {
    Entity::DEVICE_KINDS.iter().position(|k| *k == kind)
}

impl Home {
    /// An empty structure with its defaults (`name` "Home", `away` "home", states "ok").
    pub fn new_structure(id: &str, fields: Map<String, Value>) -> Home {
        let mut s = FieldMap::new();
        s.insert("structure_id", Value::from(id));
        s.insert("name", Value::from("Home"));
        s.insert("away", Value::from("home"));
        s.insert("country_code", Value::from("US"));
        s.insert("time_zone", Value::from("America/Los_Angeles"));
        s.insert("co_alarm_state", Value::from("ok"));
        s.insert("smoke_alarm_state", Value::from("ok"));
        s.insert("wwn_security_state", Value::from("ok"));
        s.insert("eta_begin", Value::from(crate::units::EPOCH));
        s.insert("wheres", Value::Object(Map::new()));
        for (k, v) in fields {
            s.insert(k, v);
        }
        Home {
            id: id.to_string(),
            structure: Arc::new(s),
            devices: Default::default(),
            products: Arc::new(FieldMap::new()),
        }
    }

    /// Rebuilds a home from its stored JSON (the Nest shape); `None` if the shape is not a
    /// home's.
    pub fn from_json(id: &str, doc: Value) -> Option<Home> {
        let Value::Object(mut root) = doc else { return None };
        let Some(Value::Object(mut structures)) = root.remove("structures") else { return None };
        let Some(Value::Object(structure)) = structures.remove(id) else { return None };
        let Some(Value::Object(devices)) = root.remove("devices") else { return None };
        let mut home = Home {
            id: id.to_string(),
            structure: Arc::new(structure.into()),
            devices: Default::default(),
            products: Arc::new(FieldMap::new()),
        };
        let mut products = Map::new();
        for (coll, items) in devices {
            match Entity::from_collection(&coll).and_then(kind_index) {
                Some(i) => {
                    let Value::Object(items) = items else { return None };
                    for (did, d) in items {
                        let Value::Object(d) = d else { return None };
                        home.devices[i].insert(did, Arc::new(d.into()));
                    }
                }
                None => {
                    products.insert(coll, items);
                }
            }
        }
        home.products = Arc::new(products.into());
        Some(home)
    }

    /// The document in the Nest shape (what the store keeps).
    pub fn to_json(&self) -> Value {
        let mut devices = Map::new();
        for (i, kind) in Entity::DEVICE_KINDS.iter().enumerate() {
            if self.devices[i].is_empty() {
                continue;
            }
            let coll: Map<String, Value> =
                self.devices[i].iter().map(|(id, d)| (id.clone(), d.to_value())).collect();
            devices.insert(kind.collection().unwrap_or_default().to_string(), Value::Object(coll));
        }
        for (k, v) in self.products.iter() {
            devices.insert(k.to_string(), v.clone());
        }
        let mut structures = Map::new();
        structures.insert(self.id.clone(), self.structure.to_value());
        let mut root = Map::new();
        root.insert("devices".into(), Value::Object(devices));
        root.insert("structures".into(), Value::Object(structures));
        Value::Object(root)
    }

    pub fn into_json(self) -> Value {
        self.to_json()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn structure(&self) -> &FieldMap {
        &self.structure
    }

    /// The structure's shared fields.
    pub fn structure_fields(&self) -> Fields {
        self.structure.clone()
    }

    /// True when both revisions hold the very same (shared, unchanged) device.
    pub fn shares_device(&self, other: &Home, kind: Entity, id: &str) -> bool {
        let Some(i) = kind_index(kind) else { return false };
        match (self.devices[i].get(id), other.devices[i].get(id)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The structure's fields, shared: home logic changes them only when a value differs.
    pub fn structure_fields_mut(&mut self) -> &mut Fields {
        &mut self.structure
    }

    pub fn structure_mut(&mut self) -> &mut FieldMap {
        Arc::make_mut(&mut self.structure)
    }

    /// Replaces the structure's fields (no copy of the old ones first, as `structure_mut` makes).
    pub fn set_structure(&mut self, fields: FieldMap) {
        self.structure = Arc::new(fields);
    }

    /// The devices of one kind, by id.
    pub fn devices(&self, kind: Entity) -> impl Iterator<Item = (&String, &FieldMap)> {
        kind_index(kind).into_iter().flat_map(move |i| self.devices[i].iter().map(|(k, v)| (k, &**v)))
    }

    pub fn device(&self, kind: Entity, id: &str) -> Option<&FieldMap> {
        self.devices[kind_index(kind)?].get(id).map(|d| &**d)
    }

    /// A device's shared fields, for changes that should copy it only when a value differs.
    pub fn device_fields_mut(&mut self, kind: Entity, id: &str) -> Option<&mut Fields> {
        self.devices[kind_index(kind)?].get_mut(id)
    }

    pub fn device_mut(&mut self, kind: Entity, id: &str) -> Option<&mut FieldMap> {
        self.device_fields_mut(kind, id).map(Arc::make_mut)
    }

    /// Adds or replaces a device.
    pub fn insert_device(&mut self, kind: Entity, id: &str, fields: impl Into<FieldMap>) {
        if let Some(i) = kind_index(kind) {
            self.devices[i].insert(id.to_string(), Arc::new(fields.into()));
        }
    }

    /// Removes a device.
    pub fn remove_device(&mut self, kind: Entity, id: &str) -> bool {
        kind_index(kind).is_some_and(|i| self.devices[i].remove(id).is_some())
    }

    /// Which kind of device `id` is, if it is in this home.
    pub fn device_kind(&self, id: &str) -> Option<Entity> {
        Entity::DEVICE_KINDS.into_iter().find(|k| self.device(*k, id).is_some())
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
        for (company, types) in self.products.iter() {
            if DEVICE_COLLECTIONS.contains(&company.as_str()) {
                continue;
            }
            for (ty, ids) in types.as_object().into_iter().flatten() {
                for (id, v) in ids.as_object().into_iter().flatten() {
                    out.push((company.to_string(), ty.clone(), id.clone(), v));
                }
            }
        }
        out
    }

    /// Whether this home holds the product data entry `devices/company/ty/id`.
    pub fn has_product_data(&self, company: &str, ty: &str, id: &str) -> bool {
        !DEVICE_COLLECTIONS.contains(&company)
            && self.products.get(company).and_then(|t| t.get(ty)).and_then(|ids| ids.get(id)).is_some()
    }

    /// The product data tree, shared like the other elements.
    pub fn products(&self) -> &FieldMap {
        &self.products
    }

    pub fn product_data_mut(&mut self, company: &str, ty: &str) -> &mut Map<String, Value> {
        let products = Arc::make_mut(&mut self.products);
        object_entry(products.object_mut(company), ty)
    }

    /// True when any Protect in the home reports a smoke or CO emergency: the HVAC is in
    /// safety shutoff.
    pub fn safety_shutoff(&self) -> bool {
        self.devices(Entity::SmokeCoAlarm).any(|(_, p)| {
            p.get("co_alarm_state").and_then(Value::as_str) == Some("emergency")
                || p.get("smoke_alarm_state").and_then(Value::as_str) == Some("emergency")
        })
    }

    /// Whether two revisions share their product data (neither changed it).
    pub fn shares_products(&self, other: &Home) -> bool {
        Arc::ptr_eq(&self.products, &other.products)
    }

    /// The elements of two revisions side by side, for diffs: `(path prefix, old, new)` per
    /// element present in either, skipping elements that are shared (unchanged).
    pub fn changed_elements<'a>(&'a self, newer: &'a Home) -> Vec<ElementPair<'a>> {
        let mut out = Vec::new();
        if !Arc::ptr_eq(&self.structure, &newer.structure) {
            out.push((
                Location::from_segments(["structures", self.id.as_str()]),
                Some(&*self.structure),
                Some(&*newer.structure),
            ));
        }
        for (i, kind) in Entity::DEVICE_KINDS.iter().enumerate() {
            let coll = kind.collection().unwrap_or_default();
            let (a, b) = (&self.devices[i], &newer.devices[i]);
            for (id, old) in a {
                match b.get(id) {
                    Some(new) if Arc::ptr_eq(old, new) => {}
                    new => out.push((
                        Location::from_segments(["devices", coll, id.as_str()]),
                        Some(&**old),
                        new.map(|n| &**n),
                    )),
                }
            }
            for (id, new) in b.iter().filter(|(id, _)| !a.contains_key(*id)) {
                out.push((Location::from_segments(["devices", coll, id.as_str()]), None, Some(&**new)));
            }
        }
        if !Arc::ptr_eq(&self.products, &newer.products) {
            out.push((Location::from_segments(["devices"]), Some(&*self.products), Some(&*newer.products)));
        }
        out
    }
}

/// The document in the Nest shape, written straight from the elements (the same text as
/// serializing [`Home::to_json`], without building and freeing a copy of the tree first).
impl serde::Serialize for Home {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;

        /// `devices`: the non-empty device collections and the product data companies, in
        /// name order as a JSON map holds them (product data wins a name both have, as in
        /// `to_json`).
        struct Devices<'a>(&'a Home);
        impl serde::Serialize for Devices<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let home = self.0;
                let mut collections: Vec<(&str, usize)> = Entity::DEVICE_KINDS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !home.devices[*i].is_empty())
                    .map(|(i, kind)| (kind.collection().unwrap_or_default(), i))
                    .filter(|(name, _)| !home.products.contains_key(name))
                    .collect();
                collections.sort_unstable();
                let mut m = serializer.serialize_map(None)?;
                let mut products = home.products.iter().peekable();
                let mut collections = collections.into_iter().peekable();
                loop {
                    let product_first = match (products.peek(), collections.peek()) {
                        (None, None) => break,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (Some((p, _)), Some((c, _))) => p.as_str() < *c,
                    };
                    if product_first {
                        if let Some((k, v)) = products.next() {
                            m.serialize_entry(k.as_str(), v)?;
                        }
                    } else if let Some((name, i)) = collections.next() {
                        m.serialize_entry(name, &Collection(&home.devices[i]))?;
                    }
                }
                m.end()
            }
        }

        struct Collection<'a>(&'a BTreeMap<String, Fields>);
        impl serde::Serialize for Collection<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(id, fields)| (id, &**fields)))
            }
        }

        struct Structures<'a>(&'a Home);
        impl serde::Serialize for Structures<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry(&self.0.id, &*self.0.structure)?;
                m.end()
            }
        }

        let mut m = serializer.serialize_map(Some(2))?;
        m.serialize_entry("devices", &Devices(self))?;
        m.serialize_entry("structures", &Structures(self))?;
        m.end()
    }
}

impl Home {
    /// The document as compact JSON text (what the store keeps).
    pub fn to_json_text(&self) -> String {
        // Cannot fail: every map key written is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The object at `key`, created (or replacing a non-object) when missing.
pub(crate) fn object_entry<'m>(m: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = m.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("made an object just above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::tests::small_home as home;

    #[test]
    fn removing_the_last_device_drops_the_collection() {
        let mut h = home();
        assert!(h.remove_device(Entity::Thermostat, "t1"));
        assert!(h.to_json()["devices"].get("thermostats").is_none());
        assert!(!h.remove_device(Entity::Thermostat, "t1"));
    }

    #[test]
    fn json_text_is_the_text_of_to_json() {
        let mut h = home();
        assert_eq!(h.to_json_text(), crate::json_text(&h.to_json()));
        h.product_data_mut("acme", "meter").insert("m1".into(), json!({"v": 1}));
        h.product_data_mut("$zeta", "x").insert("z".into(), json!([1, 2]));
        h.product_data_mut("a_first", "y").insert("q".into(), json!(null));
        assert_eq!(h.to_json_text(), crate::json_text(&h.to_json()));
        let demo = crate::tests::demo();
        assert_eq!(demo.to_json_text(), crate::json_text(&demo.to_json()));
        let empty = Home::new_structure("s9", Map::new());
        assert_eq!(empty.to_json_text(), crate::json_text(&empty.to_json()));
    }

    #[test]
    fn json_round_trips() {
        let mut h = home();
        h.product_data_mut("acme", "meter").insert("m1".into(), serde_json::json!({"v": 1}));
        let again = Home::from_json("s1", h.to_json()).unwrap();
        assert_eq!(again, h);
        assert!(Home::from_json("other", h.to_json()).is_none());
        assert!(Home::from_json("s1", serde_json::json!([1])).is_none());
    }
}
