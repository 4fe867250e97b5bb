//! An event's type-specific fields as the caller builds them ([`Fields`]).
//!
//! Every request builds two events, so this is on the hot path. A
//! `serde_json::Map` cost a hashed insert and an owned name per field, and then
//! a sort of its entries for the canonical text and again for the stored form.
//! Here names are mostly `&'static str`, nothing is hashed, and the entries
//! are sorted once, when the store takes the event.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Named JSON values. A name given twice keeps its last value, as
/// `Map::insert` would.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    entries: Vec<(Cow<'static, str>, Value)>,
    /// Sorted by name, one entry per name.
    sorted: bool,
}

impl Fields {
    /// Sets `name` (replacing an earlier value).
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        let name = name.into();
        // Names given in order (as the hot path's events are) need no sort.
        self.sorted = match self.entries.last() {
            None => true,
            Some((last, _)) => self.sorted && *last < name,
        };
        self.entries.push((name, value));
    }

    /// Index of the value `name` has now (the last one given).
    fn position(&self, name: &str) -> Option<usize> {
        if self.sorted {
            self.entries
                .binary_search_by(|(k, _)| k.as_ref().cmp(name))
                .ok()
        } else {
            self.entries.iter().rposition(|(k, _)| k == name)
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).map(|i| &self.entries[i].1)
    }

    /// The value of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.position(name).map(|i| &mut self.entries[i].1)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        if self.sorted {
            self.entries.len()
        } else {
            self.clone().into_sorted().entries.len()
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts by name (code point order, as canonical JSON wants) and keeps each
    /// name's last value.
    pub(crate) fn sort(&mut self) {
        if self.sorted {
            return;
        }
        // Stable: among equal names the last given stays last.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` keeps the earlier of two equal names: give it the later value.
        self.entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        self.sorted = true;
    }

    fn into_sorted(mut self) -> Self {
        self.sort();
        self
    }

    /// Names and values, in name order once [`Fields::sort`] has run.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Names and values, to change the values in place.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.entries.iter_mut().map(|e| (e.0.as_ref(), &mut e.1))
    }

    /// Values, to change them in place.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Names, to check them.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_ref())
    }

    /// As a `Map`, in name order.
    pub fn into_map(self) -> Map<String, Value> {
        self.into_sorted()
            .entries
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }
}

impl From<Map<String, Value>> for Fields {
    fn from(map: Map<String, Value>) -> Self {
        let mut f = Fields {
            entries: map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect(),
            sorted: false,
        };
        f.sort();
        f
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_sorted().entries == other.clone().into_sorted().entries
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.clone().into_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::deserialize(d).map(Fields::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_given_twice_keeps_its_last_value_before_and_after_sorting() {
        let mut f = Fields::default();
        f.insert("b", json!(1));
        f.insert("a", json!(2));
        f.insert(String::from("b"), json!(3));
        assert_eq!(f.get("b"), Some(&json!(3)));
        assert_eq!(f.len(), 2);
        f.sort();
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![("a", &json!(2)), ("b", &json!(3))]
        );
        assert_eq!(f.get("b"), Some(&json!(3)));
        assert_eq!(f.get("c"), None);
        *f.get_mut("a").expect("a") = json!("x");
        assert_eq!(
            Value::Object(f.clone().into_map()),
            json!({"a": "x", "b": 3})
        );
        f.insert("c", json!(null));
        assert_eq!(f.get("c"), Some(&Value::Null));
    }

    #[test]
    fn names_sort_by_code_point_as_canonical_json_does() {
        let mut f = Fields::default();
        for k in ["é", "Z", "a", "", "key with space", "_"] {
            f.insert(k, json!(k));
        }
        f.sort();
        let mut want = vec!["é", "Z", "a", "", "key with space", "_"];
        want.sort();
        assert_eq!(f.names().collect::<Vec<_>>(), want);
    }

    #[test]
    fn serializes_and_deserializes_as_an_object() {
        let mut f = Fields::default();
        f.insert("z", json!([1]));
        f.insert("a", json!({"k": true}));
        let text = serde_json::to_string(&f).expect("ser");
        assert_eq!(text, r#"{"a":{"k":true},"z":[1]}"#);
        let back: Fields = serde_json::from_str(&text).expect("de");
        assert_eq!(back, f);
    }
}
