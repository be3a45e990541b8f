//! [`FieldMap`]: the fields of one element (a device, the structure, the product data root).
//!
//! Every write copies the element it changes and frees the old copy once no revision needs it,
//! and rules, home logic and diffs look fields up dozens of times per write. A
//! `serde_json::Map` (a `BTreeMap<String, Value>`) pays for that with an allocation per key on
//! every copy and a free per key on every drop, and a search through its nodes per lookup.
//! A `FieldMap` keeps its fields in one vector sorted by name, and a name from the schema is
//! a shared `&'static str` instead of an owned `String`: copying a thermostat is one
//! allocation plus its string values. A small table of positions finds a schema name with
//! one hash probe (home logic looks up ~60 fields per thermostat write); other names are found
//! by binary search. Iteration is in name order, as a `serde_json::Map`'s, so JSON output
//! does not change.
//!
//! One file for one type: the map, its lookup table, its serialization and its tests (half
//! of the length), and the few helpers that read a field as a number, flag or text.

use std::fmt;
use std::ops::Deref;
use std::sync::LazyLock;

use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::schema::FIELDS;

/// Every top-level field name of the schema, sorted, with a hash table from text to index
/// (interning a parsed name costs one probe instead of a binary search of the names).
struct Known {
    names: Vec<&'static str>,
    /// Each name's [`Words`], in the order of `names`: most probes compare these, not text.
    words: Vec<Words>,
    /// Open addressing, `EMPTY` where free; a name's slot starts at [`slot`] of its words.
    table: Vec<u16>,
}

const TABLE_BITS: u32 = 10;
const EMPTY: u16 = u16::MAX;

static KNOWN: LazyLock<Known> = LazyLock::new(|| {
    let mut names: Vec<&'static str> =
        FIELDS.iter().map(|s| s.path.split_once('/').map_or(s.path, |(parent, _)| parent)).collect();
    names.sort_unstable();
    names.dedup();
    // The schema is a static table, so its tests would fail first; at most a quarter full
    // keeps probes short.
    assert!(names.len() * 4 <= 1 << TABLE_BITS, "the schema outgrew the name table");
    let words: Vec<Words> = names.iter().map(|n| Words::of(n.as_bytes())).collect();
    let mut table = vec![EMPTY; 1 << TABLE_BITS];
    for (i, w) in words.iter().enumerate() {
        let mut at = slot(w);
        while table[at] != EMPTY {
            at = (at + 1) & ((1 << TABLE_BITS) - 1);
        }
        table[at] = i as u16;
    }
    Known { names, words, table }
});

/// A name's length and its first, second and last eight bytes (zero-padded when shorter):
/// for a name of at most 24 bytes they are the whole text, so equal words are equal names
/// without a call to `memcmp` (all but 4 of the schema's names are that short).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Words {
    first: u64,
    second: u64,
    last: u64,
    len: usize,
}

/// Names up to this long are whole in their [`Words`].
const WHOLE_IN_WORDS: usize = 24;

impl Words {
    #[inline(always)]
    fn of(b: &[u8]) -> Words {
        match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
            (Some(first), Some(last)) => Words {
                first: u64::from_le_bytes(*first),
                // Bytes 8..16, when the name has them all (a shorter one is whole in the others).
                second: b.get(8..).and_then(<[u8]>::first_chunk::<8>).map_or(0, |c| u64::from_le_bytes(*c)),
                last: u64::from_le_bytes(*last),
                len: b.len(),
            },
            _ => {
                let w = b.iter().rev().fold(0u64, |w, &c| (w << 8) | u64::from(c));
                Words { first: w, second: 0, last: w, len: b.len() }
            }
        }
    }
}

/// Where a name's probe starts: its words, mixed. Field names differ at one end or in length
/// ("…_f"/"…_c", "…_high_f"/"…_low_f").
#[inline(always)]
fn slot(w: &Words) -> usize {
    let mixed = (w.first ^ w.last.rotate_left(29) ^ w.len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - TABLE_BITS)) as usize
}

/// The first eight bytes of a name, big-endian, zero-padded: when two names' heads differ,
/// they order as the names do (a name shorter than eight bytes is a prefix of any longer
/// one with the same head bytes, and sorts first either way).
fn head(s: &str) -> u64 {
    let b = s.as_bytes();
    if let Some(first) = b.first_chunk::<8>() {
        u64::from_be_bytes(*first)
    } else {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_be_bytes(w)
    }
}

/// The index of a schema name.
#[inline(always)]
fn known_index(s: &str) -> Option<u16> {
    let known = &*KNOWN;
    let w = Words::of(s.as_bytes());
    let mut at = slot(&w);
    loop {
        let i = known.table[at];
        if i == EMPTY {
            return None;
        }
        let n = usize::from(i);
        if known.words[n] == w && (w.len <= WHOLE_IN_WORDS || known.names[n] == s) {
            return Some(i);
        }
        at = (at + 1) & ((1 << TABLE_BITS) - 1);
    }
}

/// A field's name: the schema's shared text, or an owned one for any other name (product
/// data's company keys). `head` is its first eight bytes as a number, so most comparisons in a
/// lookup are one integer compare instead of a call to `memcmp`.
#[derive(Clone)]
pub struct Name {
    head: u64,
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// The text and its index in the schema's names.
    Known(&'static str, u16),
    Other(Box<str>),
}

impl Name {
    pub fn new(s: &str) -> Name {
        match known_index(s) {
            Some(i) => Name { head: head(s), repr: Repr::Known(KNOWN.names[usize::from(i)], i) },
            None => Name { head: head(s), repr: Repr::Other(s.into()) },
        }
    }

    fn from_string(s: String) -> Name {
        match known_index(&s) {
            Some(i) => Name { head: head(&s), repr: Repr::Known(KNOWN.names[usize::from(i)], i) },
            None => Name { head: head(&s), repr: Repr::Other(s.into_boxed_str()) },
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.repr {
            Repr::Known(s, _) => s,
            Repr::Other(s) => s,
        }
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name::from_string(s)
    }
}

impl From<&Name> for Name {
    fn from(n: &Name) -> Name {
        n.clone()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        match n.repr {
            Repr::Known(s, _) => s.to_string(),
            Repr::Other(s) => s.into_string(),
        }
    }
}

/// Fields by name, in name order (see the module docs).
#[derive(Clone)]
pub struct FieldMap {
    entries: Vec<(Name, Value)>,
    /// Where each of the first [`INDEXED`] schema names is in `entries` ([`ABSENT`] if not
    /// there): a lookup by a schema name is one hash probe and two loads. Rebuilt whenever
    /// entries move; unused (all `ABSENT`) when there are too many entries for a `u8`.
    at: [u8; INDEXED],
}

/// Schema names a `FieldMap` finds by position (any others by binary search).
const INDEXED: usize = 128;
const ABSENT: u8 = u8::MAX;

impl Default for FieldMap {
    fn default() -> FieldMap {
        FieldMap { entries: Vec::new(), at: [ABSENT; INDEXED] }
    }
}

impl PartialEq for FieldMap {
    fn eq(&self, other: &FieldMap) -> bool {
        self.entries == other.entries
    }
}

impl FieldMap {
    pub fn new() -> FieldMap {
        FieldMap::default()
    }

    /// What the position table says of `k`: `Some(Some(i))` at `i`, `Some(None)` absent,
    /// `None` when the table does not cover `k` (not a schema name, or too many entries).
    #[inline(always)]
    fn indexed(&self, k: &str) -> Option<Option<usize>> {
        let id = usize::from(known_index(k)?);
        (id < INDEXED && self.entries.len() < usize::from(ABSENT)).then(|| {
            let at = self.at[id];
            (at != ABSENT).then_some(usize::from(at))
        })
    }

    /// Binary search: `Ok(position)`, or `Err(where it would go)`.
    fn search(&self, k: &str) -> Result<usize, usize> {
        let h = head(k);
        self.entries.binary_search_by(|(n, _)| n.head.cmp(&h).then_with(|| n.as_str().cmp(k)))
    }

    /// The position of `k`, if present.
    #[inline(always)]
    fn position(&self, k: &str) -> Option<usize> {
        self.indexed(k).unwrap_or_else(|| self.search(k).ok())
    }

    /// Where a new `k` goes (`k` is absent).
    fn slot_for(&self, k: &str) -> usize {
        self.search(k).unwrap_or_else(|i| i)
    }

    /// Rebuilds `at` after entries moved.
    fn reindex(&mut self) {
        self.at = [ABSENT; INDEXED];
        if self.entries.len() >= usize::from(ABSENT) {
            return;
        }
        for (pos, (n, _)) in self.entries.iter().enumerate() {
            if let Repr::Known(_, id) = n.repr
                && usize::from(id) < INDEXED
            {
                // Below `ABSENT` (checked above), so it fits.
                self.at[usize::from(id)] = pos as u8;
            }
        }
    }

    #[inline(always)]
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.position(k).map(|i| &self.entries[i].1)
    }

    #[inline]
    pub fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        self.position(k).map(|i| &mut self.entries[i].1)
    }

    #[inline]
    pub fn contains_key(&self, k: &str) -> bool {
        self.position(k).is_some()
    }

    /// Sets a field; the old value, if there was one.
    pub fn insert(&mut self, k: impl Into<Name> + AsRef<str>, v: Value) -> Option<Value> {
        if let Some(i) = self.position(k.as_ref()) {
            return Some(std::mem::replace(&mut self.entries[i].1, v));
        }
        let i = self.slot_for(k.as_ref());
        self.entries.insert(i, (k.into(), v));
        self.reindex();
        None
    }

    pub fn remove(&mut self, k: &str) -> Option<Value> {
        let i = self.position(k)?;
        let (_, v) = self.entries.remove(i);
        self.reindex();
        Some(v)
    }

    /// The object at `k`, created (or replacing a value of another type) when missing.
    pub fn object_mut(&mut self, k: &str) -> &mut Map<String, Value> {
        let i = match self.position(k) {
            Some(i) => i,
            None => {
                let i = self.slot_for(k);
                self.entries.insert(i, (Name::new(k), Value::Object(Map::new())));
                self.reindex();
                i
            }
        };
        let slot = &mut self.entries[i].1;
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(o) => o,
            _ => unreachable!("made an object just above"),
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Name, &Value)> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Name> + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the fields for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
        self.reindex();
    }

    /// The fields as a `serde_json::Map`.
    pub fn to_map(&self) -> Map<String, Value> {
        self.entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.entries.into_iter().map(|(k, v)| (String::from(k), v)).collect()
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }
}

impl From<Map<String, Value>> for FieldMap {
    fn from(m: Map<String, Value>) -> FieldMap {
        // A `serde_json::Map` iterates in name order already.
        let mut f = FieldMap {
            entries: m.into_iter().map(|(k, v)| (Name::from_string(k), v)).collect(),
            at: [ABSENT; INDEXED],
        };
        f.reindex();
        f
    }
}

impl From<FieldMap> for Map<String, Value> {
    fn from(f: FieldMap) -> Map<String, Value> {
        f.into_map()
    }
}

impl<K: Into<Name> + AsRef<str>> FromIterator<(K, Value)> for FieldMap {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> FieldMap {
        let mut out = FieldMap::new();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

/// `fields["name"]`: the value, or `null` when absent (as indexing a `Value` gives).
impl std::ops::Index<&str> for FieldMap {
    type Output = Value;
    fn index(&self, k: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(k).unwrap_or(&NULL)
    }
}

impl<K: Into<Name> + AsRef<str>> Extend<(K, Value)> for FieldMap {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a> IntoIterator for &'a FieldMap {
    type Item = (&'a Name, &'a Value);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Name, Value)>, fn(&'a (Name, Value)) -> (&'a Name, &'a Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for FieldMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl serde::Serialize for FieldMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// Merge of named fields into an element: named fields replace, others stay. Object-valued
/// fields (a camera's `last_event`) are replaced whole: an event is one unit.
pub fn merge_fields(current: &FieldMap, fields: &FieldMap) -> FieldMap {
    let mut out = current.clone();
    for (k, v) in fields {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// A number field's value (`None` when absent or not a number).
pub fn num(m: &FieldMap, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

/// A boolean field's value (`false` when absent or not a boolean).
pub fn flag(m: &FieldMap, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// A text field's value (`""` when absent or not text).
pub fn text<'m>(m: &'m FieldMap, k: &str) -> &'m str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iterates_and_serializes_in_name_order_like_a_json_map() {
        let mut f = FieldMap::new();
        for k in ["target_temperature_f", "$acme", "away", "zzz", "device_id", "a"] {
            f.insert(k, json!(k.len()));
        }
        for k in ["target_temperature_f", "$acme", "away", "zzz", "device_id", "a"] {
            assert_eq!(f.get(k), Some(&json!(k.len())), "{k}");
        }
        assert_eq!(f.get("hvac_mode"), None);
        assert_eq!(f.get("b"), None);
        let json = serde_json::to_string(&f).unwrap();
        let map: Map<String, Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&map).unwrap(), json);
        assert_eq!(FieldMap::from(map.clone()), f);
        assert_eq!(f.to_map(), map);
    }

    #[test]
    fn heads_order_as_the_names_do() {
        let names =
            ["", "a", "a\u{0}", "ab", "abcdefgh", "abcdefgh\u{0}", "abcdefghi", "abcdefgi", "b", "zz"];
        for x in names {
            for y in names {
                if head(x) != head(y) {
                    assert_eq!(head(x).cmp(&head(y)), x.cmp(y), "{x:?} {y:?}");
                }
            }
        }
    }

    /// Every operation agrees with a `serde_json::Map`, with schema and other names mixed and
    /// with more entries than the position index covers.
    #[test]
    fn behaves_as_a_json_map() {
        let schema: Vec<&str> = KNOWN.names.clone();
        let others: Vec<String> = (0..300).map(|i| format!("other_{i:03}")).collect();
        let names: Vec<&str> = schema.iter().copied().chain(others.iter().map(String::as_str)).collect();
        let mut f = FieldMap::new();
        let mut m = Map::new();
        let mut x: u64 = 7;
        for step in 0..4000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = names[(x >> 33) as usize % names.len()];
            match (x >> 20) % 4 {
                0 | 1 => assert_eq!(f.insert(k, json!(step)), m.insert(k.to_string(), json!(step)), "{k}"),
                2 => assert_eq!(f.remove(k), m.remove(k), "{k}"),
                _ => {
                    if let (Some(a), Some(b)) = (f.get_mut(k), m.get_mut(k)) {
                        *a = json!(-1);
                        *b = json!(-1);
                    }
                }
            }
            for probe in [k, names[step as usize % names.len()], "absent"] {
                assert_eq!(f.get(probe), m.get(probe), "{probe} at step {step}");
                assert_eq!(f.contains_key(probe), m.contains_key(probe));
            }
            assert_eq!(f.len(), m.len());
        }
        assert!(f.len() > usize::from(ABSENT), "the test went past the index's reach");
        assert_eq!(f.to_map(), m);
        assert_eq!(FieldMap::from(m.clone()).to_map(), m);
        f.retain(|k, _| !k.starts_with("other_"));
        m.retain(|k, _| !k.starts_with("other_"));
        for k in &names {
            assert_eq!(f.get(k), m.get(*k), "{k} after retain");
        }
    }

    #[test]
    fn insert_replaces_and_remove_removes() {
        let mut f = FieldMap::new();
        assert_eq!(f.insert("hvac_mode", json!("heat")), None);
        assert_eq!(f.insert(String::from("hvac_mode"), json!("cool")), Some(json!("heat")));
        assert_eq!(f.get("hvac_mode"), Some(&json!("cool")));
        assert_eq!(f.len(), 1);
        assert_eq!(f.remove("hvac_mode"), Some(json!("cool")));
        assert!(f.is_empty());
    }

    #[test]
    fn every_schema_name_is_found_by_its_text() {
        let known = &*KNOWN;
        assert!(known.names.windows(2).all(|w| w[0] < w[1]));
        for (i, name) in known.names.iter().enumerate() {
            assert_eq!(known_index(name), Some(i as u16), "{name}");
            assert_eq!(Name::new(name).as_str(), *name);
            // A name one byte away is another name, wherever the byte is: in the words a
            // probe compares or, past 24 bytes, only in the text.
            for at in 0..name.len() {
                let mut other = name.as_bytes().to_vec();
                other[at] = b'#';
                let other = String::from_utf8(other).unwrap();
                assert_eq!(known_index(&other), None, "{other}");
            }
        }
        for other in [
            "",
            "x",
            "hvac_mod",
            "hvac_modes",
            "$company",
            "target_temperature_x",
            "target_temperature_high_f\u{0}",
            "target_temXerature_high_f",
            "nam",
            "name\u{0}",
        ] {
            assert_eq!(known_index(other), None, "{other}");
        }
    }

    #[test]
    fn schema_names_are_shared_and_others_owned() {
        assert!(matches!(Name::new("hvac_mode").repr, Repr::Known(..)));
        assert!(matches!(Name::from(String::from("$company")).repr, Repr::Other(_)));
        assert_eq!(Name::new("$company"), "$company");
    }

    #[test]
    fn object_mut_makes_an_object() {
        let mut f = FieldMap::new();
        f.insert("wheres", json!(3));
        f.object_mut("wheres").insert("w1".into(), json!({"name": "Den"}));
        f.object_mut("eta").insert("trip_id".into(), json!("t"));
        assert_eq!(f.to_value(), json!({"eta": {"trip_id": "t"}, "wheres": {"w1": {"name": "Den"}}}));
    }
}
