//! Differences between two versions of a document: the changed data locations (for the
//! change log and stream routing) and the RFC 7396 merge patch from old to new (for resume
//! and delta streams).

use serde_json::{Map, Value};

use crate::location::Location;

/// `(changed leaf locations, merge patch)`. Equal documents give `([], {})`.
pub fn diff(old: &Value, new: &Value) -> (Vec<String>, Value) {
    let mut paths = Vec::new();
    let patch =
        walk(&Location::root(), old, new, &mut paths).unwrap_or_else(|| Value::Object(Map::new()));
    (paths, patch)
}

fn walk(at: &Location, old: &Value, new: &Value, paths: &mut Vec<String>) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
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
        _ if old == new => None,
        _ => {
            paths.push(at.to_string());
            Some(new.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::json_merge;
    use serde_json::json;

    #[test]
    fn paths_and_patch() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": true});
        let new = json!({"a": {"b": 1, "c": 3}, "d": [1, 2], "f": "x"});
        let (paths, patch) = diff(&old, &new);
        assert_eq!(paths, ["/a/c", "/d", "/f", "/e"]);
        assert_eq!(
            patch,
            json!({"a": {"c": 3}, "d": [1, 2], "f": "x", "e": null})
        );
        let mut applied = old.clone();
        json_merge(&mut applied, &patch);
        assert_eq!(applied, new);
        assert_eq!(diff(&new, &new), (vec![], json!({})));
    }
}
