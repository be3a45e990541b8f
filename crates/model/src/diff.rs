//! Differences between two versions of a document: the changed data locations (for the
//! change log and stream routing) and the RFC 7396 merge patch from old to new (for resume
//! and delta streams, and to rebuild documents from a checkpoint).

use serde_json::{Map, Value};

use crate::fields::Name;
use crate::home::Home;
use crate::location::child_text;

/// `(changed leaf locations, merge patch)`. Equal documents give `([], {})`.
pub fn diff(old: &Value, new: &Value) -> (Vec<String>, Value) {
    let mut out = Walk { paths: Vec::new(), inverse: false };
    let patch = out.value("/", old, new).map_or_else(|| Value::Object(Map::new()), |(p, _)| p);
    (out.paths, patch)
}

/// What a write changed in a home: the leaf locations, the merge patch from the old revision
/// to the new one, and the inverse patch back (resume replays it backwards).
#[derive(Debug, Clone, PartialEq)]
pub struct HomeDiff {
    pub paths: Vec<String>,
    pub patch: Value,
    pub inverse: Value,
}

/// [`HomeDiff`] of two revisions of a home, looking only at the elements that are not shared
/// between them (most writes change one device and leave everything else shared). One pass
/// over each changed element gives both patches.
pub fn diff_homes(old: &Home, new: &Home) -> HomeDiff {
    let mut out = Walk { paths: Vec::new(), inverse: true };
    let mut patch = Map::new();
    let mut inverse = Map::new();
    for (at, a, b) in old.changed_elements(new) {
        let text = at.to_string();
        let part = match (a, b) {
            (Some(a), Some(b)) => out.maps(&text, a.iter().map(named), b.iter().map(named)),
            (None, Some(b)) => {
                out.paths.push(text);
                Some((b.to_value(), Value::Null))
            }
            (Some(a), None) => {
                out.paths.push(text);
                Some((Value::Null, a.to_value()))
            }
            (None, None) => None,
        };
        if let Some((forward, backward)) = part {
            insert_at(&mut patch, at.segments(), forward);
            insert_at(&mut inverse, at.segments(), backward);
        }
    }
    HomeDiff { paths: out.paths, patch: Value::Object(patch), inverse: Value::Object(inverse) }
}

fn named<'a>((k, v): (&'a Name, &'a Value)) -> (&'a str, &'a Value) {
    (k.as_str(), v)
}

fn keyed<'a>((k, v): (&'a String, &'a Value)) -> (&'a str, &'a Value) {
    (k.as_str(), v)
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

/// One walk over two versions. Patches come back as `(forward, inverse)`; the inverse side is
/// left `Null` when not asked for. Each level gets its location's text, so a changed key's
/// path is one append, not a new location written out segment by segment.
struct Walk {
    paths: Vec<String>,
    inverse: bool,
}

impl Walk {
    fn value(&mut self, text: &str, old: &Value, new: &Value) -> Option<(Value, Value)> {
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => self.maps(text, o.iter().map(keyed), n.iter().map(keyed)),
            _ if old == new => None,
            _ => {
                self.paths.push(text.to_string());
                Some((new.clone(), self.keep(old)))
            }
        }
    }

    fn keep(&self, v: &Value) -> Value {
        if self.inverse { v.clone() } else { Value::Null }
    }

    /// Both maps iterate in key order (serde_json's `Map` is a `BTreeMap` here, and a
    /// `FieldMap` is sorted), so one merge-join pass finds every added, removed and changed key.
    fn maps<'a>(
        &mut self,
        text: &str,
        o: impl Iterator<Item = (&'a str, &'a Value)>,
        n: impl Iterator<Item = (&'a str, &'a Value)>,
    ) -> Option<(Value, Value)> {
        let mut forward = Map::new();
        let mut backward = Map::new();
        let mut olds = o.peekable();
        let mut news = n.peekable();
        loop {
            let order = match (olds.peek(), news.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
            };
            match order {
                std::cmp::Ordering::Less => {
                    // Removed.
                    if let Some((k, ov)) = olds.next() {
                        self.paths.push(child_text(text, k));
                        forward.insert(k.to_string(), Value::Null);
                        backward.insert(k.to_string(), self.keep(ov));
                    }
                }
                std::cmp::Ordering::Greater => {
                    // Added.
                    if let Some((k, nv)) = news.next() {
                        self.paths.push(child_text(text, k));
                        forward.insert(k.to_string(), nv.clone());
                        backward.insert(k.to_string(), Value::Null);
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some((k, ov)), Some((_, nv))) = (olds.next(), news.next())
                        && ov != nv
                        && let Some((f, b)) = self.value(&child_text(text, k), ov, nv)
                    {
                        forward.insert(k.to_string(), f);
                        backward.insert(k.to_string(), b);
                    }
                }
            }
        }
        (!forward.is_empty()).then_some((Value::Object(forward), Value::Object(backward)))
    }
}

/// RFC 7396 merge patch, for free-form product data (`null` deletes).
pub fn json_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Entity;
    use serde_json::json;

    #[test]
    fn paths_and_patch() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": true});
        let new = json!({"a": {"b": 1, "c": 3}, "d": [1, 2], "f": "x"});
        let (paths, patch) = diff(&old, &new);
        assert_eq!(paths, ["/a/c", "/d", "/e", "/f"]);
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
        b.device_mut(Entity::Thermostat, "t1").unwrap().insert("x", json!(5));
        b.remove_device(Entity::Camera, "c1");
        b.insert_device(Entity::SmokeCoAlarm, "p1", json!({"ok": true}).as_object().unwrap().clone());
        b.structure_mut().insert("name", json!("Cabin"));
        b.product_data_mut("acme", "meter").insert("m".into(), json!({"v": 1}));
        let HomeDiff { paths, patch, inverse } = diff_homes(&a, &b);
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
        assert_eq!(Home::from_json("s", rebuilt.clone()).unwrap(), b);
        // The inverse turns it back, and equals the diff taken the other way.
        json_merge(&mut rebuilt, &inverse);
        assert_eq!(Home::from_json("s", rebuilt).unwrap(), a);
        assert_eq!(inverse, diff_homes(&b, &a).patch);
        let none = diff_homes(&b, &b.clone());
        assert_eq!((none.paths, none.patch), (vec![], json!({})));
    }

    #[test]
    fn json_merge_is_rfc7396() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        json_merge(&mut t, &json!({"a": null, "b": {"c": 4}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 4, "d": 3}, "e": [1]}));
    }
}
