//! Differences between two versions of a document: the changed data locations (for the
//! change log and stream routing) and the RFC 7396 merge patch from old to new (for resume
//! and delta streams, and to rebuild documents from a checkpoint).

use serde_json::{Map, Value};

use crate::home::Home;
use crate::location::Location;

/// `(changed leaf locations, merge patch)`. Equal documents give `([], {})`.
pub fn diff(old: &Value, new: &Value) -> (Vec<String>, Value) {
    let mut paths = Vec::new();
    let patch = walk(&Location::root(), old, new, &mut paths).unwrap_or_else(|| Value::Object(Map::new()));
    (paths, patch)
}

/// [`diff`] of two revisions of a home, looking only at the elements that are not shared
/// between them (most writes change one device and leave everything else shared).
pub fn diff_homes(old: &Home, new: &Home) -> (Vec<String>, Value) {
    let mut paths = Vec::new();
    let mut patch = Map::new();
    for (prefix, a, b) in old.changed_elements(new) {
        let at = Location::parse(&prefix).unwrap_or_default();
        let part = match (a, b) {
            (Some(a), Some(b)) => walk_maps(&at, a, b, &mut paths),
            (None, Some(b)) => {
                paths.push(at.to_string());
                Some(Value::Object(b.clone()))
            }
            (Some(_), None) => {
                paths.push(at.to_string());
                Some(Value::Null)
            }
            (None, None) => None,
        };
        if let Some(part) = part {
            insert_at(&mut patch, at.segments(), part);
        }
    }
    (paths, Value::Object(patch))
}

/// Puts `value` at `path` inside `tree`, merging with what is already there.
fn insert_at(tree: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        if let Value::Object(m) = value {
            tree.extend(m);
        }
        return;
    };
    let mut node = tree;
    for p in parents {
        node = crate::home::object_entry(node, p);
    }
    match (node.get_mut(last), value) {
        (Some(Value::Object(existing)), Value::Object(m)) => existing.extend(m),
        (_, v) => {
            node.insert(last.clone(), v);
        }
    }
}

fn walk(at: &Location, old: &Value, new: &Value, paths: &mut Vec<String>) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => walk_maps(at, o, n, paths),
        _ if old == new => None,
        _ => {
            paths.push(at.to_string());
            Some(new.clone())
        }
    }
}

fn walk_maps(
    at: &Location,
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    paths: &mut Vec<String>,
) -> Option<Value> {
    let mut patch = Map::new();
    for (k, nv) in n {
        match o.get(k) {
            Some(ov) if ov == nv => {}
            Some(ov) => {
                if let Some(p) = walk(&at.child(k.clone()), ov, nv, paths) {
                    patch.insert(k.clone(), p);
                }
            }
            None => {
                paths.push(at.child(k.clone()).to_string());
                patch.insert(k.clone(), nv.clone());
            }
        }
    }
    for k in o.keys().filter(|k| !n.contains_key(*k)) {
        paths.push(at.child(k.clone()).to_string());
        patch.insert(k.clone(), Value::Null);
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Entity;
    use crate::write::json_merge;
    use serde_json::json;

    #[test]
    fn paths_and_patch() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": true});
        let new = json!({"a": {"b": 1, "c": 3}, "d": [1, 2], "f": "x"});
        let (paths, patch) = diff(&old, &new);
        assert_eq!(paths, ["/a/c", "/d", "/f", "/e"]);
        assert_eq!(patch, json!({"a": {"c": 3}, "d": [1, 2], "f": "x", "e": null}));
        let mut applied = old.clone();
        json_merge(&mut applied, &patch);
        assert_eq!(applied, new);
        assert_eq!(diff(&new, &new), (vec![], json!({})));
    }

    #[test]
    fn home_diff_equals_the_whole_document_diff() {
        let mut a = Home::new_structure("s", Map::new());
        a.insert_device(Entity::Thermostat, "t1", json!({"x": 1, "y": 2}).as_object().unwrap().clone());
        a.insert_device(Entity::Thermostat, "t2", json!({"x": 1}).as_object().unwrap().clone());
        a.insert_device(Entity::Camera, "c1", json!({"z": 1}).as_object().unwrap().clone());
        let mut b = a.clone();
        b.device_mut(Entity::Thermostat, "t1").unwrap().insert("x".into(), json!(5));
        b.remove_device(Entity::Camera, "c1");
        b.insert_device(Entity::SmokeCoAlarm, "p1", json!({"ok": true}).as_object().unwrap().clone());
        b.structure_mut().insert("name".into(), json!("Cabin"));
        b.product_data_mut("acme", "meter").insert("m".into(), json!({"v": 1}));
        let (paths, patch) = diff_homes(&a, &b);
        for expected in [
            "/devices/thermostats/t1/x",
            "/devices/cameras/c1",
            "/devices/smoke_co_alarms/p1",
            "/structures/s/name",
        ] {
            assert!(paths.iter().any(|p| p == expected), "{expected} not in {paths:?}");
        }
        // The patch turns the old document into the new one.
        let mut rebuilt = a.to_json();
        json_merge(&mut rebuilt, &patch);
        assert_eq!(Home::from_json("s", rebuilt).unwrap(), b);
        assert_eq!(diff_homes(&b, &b.clone()), (vec![], json!({})));
    }
}
