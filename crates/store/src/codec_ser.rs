//! Pre-encoding straight from typed values: a `serde::Serializer` that writes
//! the bytes `codec::put_value(&serde_json::to_value(v)?, None)` would, without
//! building the `Value` tree in between (it was most of the cost of storing a
//! request record).
//!
//! Everything `serde_json::to_value` does is mirrored: `None` and unit are
//! null, non-finite floats null, unit variants strings, newtype structs
//! transparent, other variants `{variant: value}`, map keys stringified, and
//! a key given twice keeps its last value. Object keys are sorted here, as
//! `codec::put_object` sorts them. Not mirrored: `serde_json::value::RawValue`
//! (an error; nothing the store writes holds one).

use std::io::Write as _;

use serde::ser::{self, Impossible, Serialize};
use serde_json::Error;

use crate::codec::{INTERNED, Tag, put_str, put_varint};

/// Appends the pre-encoding of `v`, leaving `skip` out of the top-level object
/// as if removed from `to_value(v)`. On error `out` is left as it was.
pub(crate) fn put_serialize<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    v: &T,
    skip: Option<&str>,
) -> Result<(), Error> {
    let len = out.len();
    let mut enc = Encoder {
        out: &mut *out,
        skip,
        entries: Vec::new(),
        scratch: Vec::new(),
    };
    let done = v.serialize(ValueSer {
        enc: &mut enc,
        intern: false,
        top: true,
    });
    if done.is_err() {
        out.truncate(len);
    }
    done
}

fn error(msg: &'static str) -> Error {
    ser::Error::custom(msg)
}

fn is_interned(key: &[u8]) -> bool {
    INTERNED.iter().any(|k| k.as_bytes() == key)
}

/// serde_json's private marker for `RawValue` (only seen with its `raw_value` feature).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Output and the scratch space shared by every nesting level.
struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    skip: Option<&'a str>,
    /// Entries of the objects still open, innermost last.
    entries: Vec<Entry>,
    /// An object's entries as first written, while they are emitted in order.
    scratch: Vec<u8>,
}

/// An object entry as first written: key bytes at `key..value`, its encoded
/// value at `value..end` (positions in the output).
#[derive(Clone, Copy)]
struct Entry {
    /// The key's first 8 bytes, big-endian: most comparisons end there.
    head: u64,
    key: usize,
    value: usize,
    end: usize,
}

/// Where an open object's entries start, in the output and in `entries`.
#[derive(Clone, Copy)]
struct ObjectStart {
    at: usize,
    first: usize,
}

/// The one-entry object `{variant: …}` around a variant's content.
#[derive(Clone, Copy)]
struct VariantStart {
    object: ObjectStart,
    key: usize,
    value: usize,
    top: bool,
}

impl Encoder<'_> {
    fn put_u64(&mut self, n: u64) {
        self.out.push(Tag::Uint as u8);
        put_varint(self.out, n);
    }

    fn put_i64(&mut self, n: i64) {
        if n >= 0 {
            self.put_u64(n as u64);
        } else {
            self.out.push(Tag::Neg as u8);
            put_varint(self.out, (-(n + 1)) as u64);
        }
    }

    fn put_f64(&mut self, f: f64) {
        if f.is_finite() {
            self.out.push(Tag::Float as u8);
            self.out.extend_from_slice(&f.to_le_bytes());
        } else {
            self.out.push(Tag::Null as u8);
        }
    }

    /// Entries are written unordered at first: the header and sorted copy come at the end.
    fn open_object(&self) -> ObjectStart {
        ObjectStart {
            at: self.out.len(),
            first: self.entries.len(),
        }
    }

    /// Records the entry whose key starts at `key` and value at `value`; in the
    /// top-level object the skipped key is dropped instead.
    fn close_entry(&mut self, key: usize, value: usize, top: bool) {
        if top
            && self
                .skip
                .is_some_and(|s| s.as_bytes() == &self.out[key..value])
        {
            self.out.truncate(key);
        } else {
            let mut head = [0; 8];
            let k = &self.out[key..value];
            let n = k.len().min(8);
            head[..n].copy_from_slice(&k[..n]);
            self.entries.push(Entry {
                head: u64::from_be_bytes(head),
                key,
                value,
                end: self.out.len(),
            });
        }
    }

    /// Rewrites the object's entries, from `start` to the end of the output, as
    /// the codec wants them: header, then entries sorted by key.
    fn close_object(&mut self, start: ObjectStart) {
        let Encoder {
            out,
            entries,
            scratch,
            ..
        } = self;
        let key = |e: &Entry| &out[e.key..e.value];
        // Ties go by position, so a key given twice has its last value last.
        entries[start.first..].sort_unstable_by(|a, b| {
            a.head
                .cmp(&b.head)
                .then_with(|| key(a).cmp(key(b)))
                .then(a.key.cmp(&b.key))
        });
        // Keep the last of each run of equal keys, as `Map::insert` would.
        let mut kept = start.first;
        for i in start.first..entries.len() {
            let e = entries[i];
            if entries.get(i + 1).is_none_or(|next| key(next) != key(&e)) {
                entries[kept] = e;
                kept += 1;
            }
        }
        entries.truncate(kept);

        scratch.clear();
        scratch.extend_from_slice(&out[start.at..]);
        out.truncate(start.at);
        out.push(Tag::Object as u8);
        put_varint(out, (kept - start.first) as u64);
        for e in &entries[start.first..] {
            put_varint(out, (((e.value - e.key) as u64) << 1) | 1);
            // Key and value were written back to back.
            out.extend_from_slice(&scratch[e.key - start.at..e.end - start.at]);
        }
        entries.truncate(start.first);
    }

    fn open_variant(&mut self, variant: &str, top: bool) -> VariantStart {
        let object = self.open_object();
        let key = self.out.len();
        self.out.extend_from_slice(variant.as_bytes());
        VariantStart {
            object,
            key,
            value: self.out.len(),
            top,
        }
    }

    fn close_variant(&mut self, v: VariantStart) {
        self.close_entry(v.key, v.value, v.top);
        self.close_object(v.object);
    }
}

/// Serialises one value. `intern`: it sits under a key in [`INTERNED`] (so a
/// string goes in the dictionary); `top`: it is the value passed in, whose
/// object leaves out the skipped key.
struct ValueSer<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    intern: bool,
    top: bool,
}

impl<'e, 'a> ser::Serializer for ValueSer<'e, 'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'e, 'a>;
    type SerializeTuple = Seq<'e, 'a>;
    type SerializeTupleStruct = Seq<'e, 'a>;
    type SerializeTupleVariant = Seq<'e, 'a>;
    type SerializeMap = Object<'e, 'a>;
    type SerializeStruct = Object<'e, 'a>;
    type SerializeStructVariant = Object<'e, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.enc
            .out
            .push(if v { Tag::True } else { Tag::False } as u8);
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.enc.put_i64(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if let Ok(u) = u64::try_from(v) {
            self.enc.put_u64(u);
        } else if let Ok(i) = i64::try_from(v) {
            self.enc.put_i64(i);
        } else {
            return Err(error("number out of range"));
        }
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.enc.put_u64(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        let v = u64::try_from(v).map_err(|_| error("number out of range"))?;
        self.serialize_u64(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.enc.put_f64(v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        put_str(self.enc.out, v, self.intern);
        Ok(())
    }

    /// An array of numbers, as `to_value` makes it.
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.enc.out.push(Tag::Array as u8);
        put_varint(self.enc.out, v.len() as u64);
        for b in v {
            self.enc.put_u64(u64::from(*b));
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.enc.out.push(Tag::Null as u8);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let v = self.enc.open_variant(variant, self.top);
        value.serialize(ValueSer {
            enc: &mut *self.enc,
            intern: is_interned(variant.as_bytes()),
            top: false,
        })?;
        self.enc.close_variant(v);
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'e, 'a>, Error> {
        Ok(Seq::open(self.enc, len, None))
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'e, 'a>, Error> {
        Ok(Seq::open(self.enc, Some(len), None))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'e, 'a>, Error> {
        Ok(Seq::open(self.enc, Some(len), None))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'e, 'a>, Error> {
        let v = self.enc.open_variant(variant, self.top);
        Ok(Seq::open(self.enc, Some(len), Some(v)))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'e, 'a>, Error> {
        Ok(Object::open(self.enc, self.top, None))
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Object<'e, 'a>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Err(error("raw JSON values cannot be pre-encoded"));
        }
        Ok(Object::open(self.enc, self.top, None))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'e, 'a>, Error> {
        let v = self.enc.open_variant(variant, self.top);
        Ok(Object::open(self.enc, false, Some(v)))
    }
}

/// An array being written (or a tuple variant's content).
struct Seq<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    /// Where the header is, and the length it gives.
    header: usize,
    body: usize,
    said: usize,
    count: usize,
    variant: Option<VariantStart>,
}

impl<'e, 'a> Seq<'e, 'a> {
    fn open(enc: &'e mut Encoder<'a>, len: Option<usize>, variant: Option<VariantStart>) -> Self {
        let header = enc.out.len();
        let said = len.unwrap_or(0);
        enc.out.push(Tag::Array as u8);
        put_varint(enc.out, said as u64);
        Seq {
            header,
            body: enc.out.len(),
            enc,
            said,
            count: 0,
            variant,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(ValueSer {
            enc: &mut *self.enc,
            intern: false,
            top: false,
        })?;
        self.count += 1;
        Ok(())
    }

    fn close(self) -> Result<(), Error> {
        // The length hint was missing or wrong: rewrite the header.
        if self.count != self.said {
            let mut header = vec![Tag::Array as u8];
            put_varint(&mut header, self.count as u64);
            self.enc.out.splice(self.header..self.body, header);
        }
        if let Some(v) = self.variant {
            self.enc.close_variant(v);
        }
        Ok(())
    }
}

/// The four sequence traits serde asks for, all the same array.
macro_rules! seq_impl {
    ($($tr:ident :: $method:ident),*) => {$(
        impl ser::$tr for Seq<'_, '_> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }

            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object being written (a map, a struct, or a struct variant's content).
struct Object<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    start: ObjectStart,
    top: bool,
    /// A map key written and waiting for its value: (key start, value start).
    key: Option<(usize, usize)>,
    variant: Option<VariantStart>,
}

impl<'e, 'a> Object<'e, 'a> {
    fn open(enc: &'e mut Encoder<'a>, top: bool, variant: Option<VariantStart>) -> Self {
        Object {
            start: enc.open_object(),
            enc,
            top,
            key: None,
            variant,
        }
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: usize,
        at: usize,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(ValueSer {
            intern: is_interned(&self.enc.out[key..at]),
            enc: &mut *self.enc,
            top: false,
        })?;
        self.enc.close_entry(key, at, self.top);
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        // Not worth encoding what is dropped anyway.
        if self.top && self.enc.skip == Some(name) {
            return Ok(());
        }
        let key = self.enc.out.len();
        self.enc.out.extend_from_slice(name.as_bytes());
        let at = self.enc.out.len();
        self.value(key, at, value)
    }

    fn close(self) -> Result<(), Error> {
        self.enc.close_object(self.start);
        if let Some(v) = self.variant {
            self.enc.close_variant(v);
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let start = self.enc.out.len();
        key.serialize(KeySer(self.enc.out))?;
        self.key = Some((start, self.enc.out.len()));
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let (key, at) = self
            .key
            .take()
            .ok_or_else(|| error("map value without a key"))?;
        self.value(key, at, value)
    }

    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A struct and a struct variant's content are the same object.
macro_rules! struct_impl {
    ($($tr:ident),*) => {$(
        impl ser::$tr for Object<'_, '_> {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(name, value)
            }

            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

struct_impl!(SerializeStruct, SerializeStructVariant);

/// Writes a map key's text, as serde_json turns keys into strings.
struct KeySer<'o>(&'o mut Vec<u8>);

fn key_must_be_a_string() -> Error {
    error("key must be a string")
}

impl KeySer<'_> {
    /// Writing into a Vec cannot fail.
    fn display(self, v: impl std::fmt::Display) -> Result<(), Error> {
        let _ = write!(self.0, "{v}");
        Ok(())
    }

    fn float<F: Serialize>(self, v: F, finite: bool) -> Result<(), Error> {
        if !finite {
            return Err(error("float key must be finite"));
        }
        // serde_json's own float text, which is what it uses for keys.
        serde_json::to_writer(&mut *self.0, &v)
    }
}

impl ser::Serializer for KeySer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.display(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use serde::Serialize;
    use serde::ser::{SerializeSeq, Serializer};
    use serde_json::{Map, Value, json};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::put_serialize;
    use crate::codec::{EMPTY_SHA256, Interner, Reader, put_value};
    use crate::model::{Approval, EditRecord, RequestRecord, Status};

    const ID: &str = "01a22b69-22bc-778e-83ba-809a9621ffec";

    /// What `Row::new` used to do: through a `Value`, `skip` removed.
    fn via_value<T: Serialize + ?Sized>(v: &T, skip: Option<&str>) -> Vec<u8> {
        let mut value = serde_json::to_value(v).expect("to_value");
        if let (Some(k), Value::Object(m)) = (skip, &mut value) {
            m.remove(k);
        }
        let mut out = Vec::new();
        put_value(&mut out, &value, None);
        out
    }

    /// Written after other bytes, as positions in the output must not assume it was empty.
    fn direct<T: Serialize + ?Sized>(v: &T, skip: Option<&str>) -> Vec<u8> {
        let mut out = b"prefix".to_vec();
        put_serialize(&mut out, v, skip).expect("encode");
        assert_eq!(&out[..6], b"prefix");
        out.split_off(6)
    }

    #[track_caller]
    fn assert_same<T: Serialize + ?Sized>(v: &T) {
        assert_eq!(direct(v, None), via_value(v, None));
        assert_eq!(direct(v, Some("id")), via_value(v, Some("id")));
    }

    fn t(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("time")
    }

    /// Object keys in a deliberately unsorted order, and every kind of value.
    fn args() -> Value {
        json!({
            "zeta": 1,
            "amount": -12,
            "nested": {
                "z": [1, -1, 1.5, 1e300, -0.0, 0.0, 2.0, 18_446_744_073_709_551_615u64,
                      -9_223_372_036_854_775_808i64, 9_223_372_036_854_775_807i64],
                "a": {"deep": {"deeper": [], "empty": {}}},
                "": "",
            },
            "unicode": "héllo ☕ 𝄞 \u{0} \"q\"",
            "uuid": ID,
            "UUID": ID.to_uppercase(),
            "hex": "ab".repeat(32),
            "HEX": "AB".repeat(32),
            "hex63": "a".repeat(63),
            "empty_sha": EMPTY_SHA256,
            "time": "2026-11-30T07:44:00.188777603Z",
            "time_offset": "2026-11-30T07:44:00+01:00",
            "time_short": "2026-11-30T07:44:00.1Z",
            "agent": "interned under args",
            "status": ["not interned in an array"],
            "type": {"type": "nested interned"},
            "user-agent": "x".repeat(201),
            "list": [{"b": 1, "a": 2}, [], {}, null, true, false, "type"],
            "k".repeat(200): "long key",
            "é": 1, "Z": 2, "\u{0}": 3, "aa": 4, "a": 5,
            "id": "an inner id stays",
        })
    }

    fn full_record() -> RequestRecord {
        RequestRecord {
            created_at: t("2026-11-30T07:44:00.188777603Z"),
            method: "POST".into(),
            headers: BTreeMap::from([
                ("stripe-account".into(), "acct_1".into()),
                ("idempotency-key".into(), ID.into()),
                ("accept".into(), "application/json".into()),
                ("prefer".into(), String::new()),
            ]),
            args: args(),
            decision: "REQUIRE_APPROVAL".into(),
            rule: Some("big-refunds".into()),
            reason: "over €100 ☕".into(),
            status: Status::Approved,
            required_approvals: 2,
            approvals: vec![
                Approval {
                    operator: "alice".into(),
                    at: t("2026-11-30T07:45:00.5Z"),
                    reason: Some("fine".into()),
                    grant: Some("01a22b69-22bc-778e-83ba-809a9621ff00".into()),
                },
                Approval {
                    operator: "bob".into(),
                    at: t("2026-11-30T07:46:00Z"),
                    reason: None,
                    grant: None,
                },
            ],
            rejected_by: Some("carol".into()),
            rejected_reason: Some("no".into()),
            expires_at: Some(t("2026-12-01T07:44:00Z")),
            upstream_status: Some(201),
            completed_at: Some(t("2026-11-30T07:47:00.000000001Z")),
            intents: vec![
                json!({"resource": "stripe.refund", "action": "create", "args": {"amount": -5}}),
                Value::Null,
            ],
            body_sha256: EMPTY_SHA256.into(),
            policy_version: "cd".repeat(32),
            retry_grant_used: true,
            explicit: true,
            grant_id: Some("01a22b69-22bc-778e-83ba-809a9621ff01".into()),
            grantable: true,
            approved_args: Some(json!({"amount": 50, "currency": "eur", "meta": {"z": 1, "a": 2}})),
            edited: true,
            edit: Some(EditRecord {
                patch: json!({"amount": 50, "note": null}),
                body_sha256: "ef".repeat(32),
            }),
            ..crate::testing::record(ID)
        }
    }

    fn records() -> Vec<RequestRecord> {
        let mut all = vec![crate::testing::record(ID), full_record()];
        for status in Status::ALL {
            all.push(RequestRecord {
                status,
                args: json!([1, {"b": [], "a": null}]),
                ..crate::testing::record("r1")
            });
        }
        all
    }

    #[test]
    fn records_encode_as_through_a_value() {
        for rec in records() {
            assert_same(&rec);
        }
    }

    /// The stored row decodes back to the record, and the bytes are the old path's.
    #[test]
    fn rows_decode_back_to_the_record() {
        for rec in records() {
            let row = crate::rows::Row::new(&rec).expect("row");
            assert_eq!(row.pre, via_value(&rec, Some("id")));
            let mut interner = Interner::default();
            let mut body = Vec::new();
            interner
                .finish(&mut Reader::new(&row.pre), &mut body)
                .expect("finish");
            let mut words = interner.take_new();
            words.sort();
            let words: Vec<Arc<str>> = words.into_iter().map(|(_, w)| Arc::from(w)).collect();
            let stored = crate::layout::encode_row(row.status, row.open, &row.decision, &[], &body);
            let back = crate::layout::decode_record(&stored, &words, &rec.id).expect("decode");
            assert_eq!(back, rec);
        }
    }

    #[test]
    fn values_in_insertion_order_come_out_sorted() {
        let v = json!({"b": 1, "id": 2, "a": {"d": [{"y": 1, "x": 2}], "c": 2}});
        // With `preserve_order` the map keeps insertion order: the encoder must sort.
        let first = v
            .as_object()
            .and_then(|m| m.keys().next())
            .map(String::as_str);
        assert_eq!(first, Some("b"));
        assert_same(&v);
        assert_same(&args());
        // Keys alike in their first 8 bytes, and prefixes of each other.
        assert_same(&json!({
            "abcdefgh2": 1, "abcdefgh1": 2, "abcdefgh": 3, "abcdefg\u{0}": 4, "abcdefg": 5,
            "abcdefgh\u{0}": 6, "": 7, "\u{0}": 8, "\u{0}\u{0}": 9, "ÿ": 10, "é": 11,
        }));
        assert_same(&json!({}));
        assert_same(&json!([]));
        assert_same(&json!(null));
        assert_same(&json!("2026-11-30T07:44:00Z"));
    }

    /// A map as serde sees it, keys in the given order and possibly repeated.
    struct Pairs<K, V>(Vec<(K, V)>);

    impl<K: Serialize, V: Serialize> Serialize for Pairs<K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    struct Bytes(&'static [u8]);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// A sequence whose length hint is `hint` whatever it holds.
    struct Hinted(Option<usize>, Vec<u32>);

    impl Serialize for Hinted {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(self.0)?;
            for i in &self.1 {
                seq.serialize_element(i)?;
            }
            seq.end()
        }
    }

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        First,
        #[serde(rename = "agent")]
        Agent,
    }

    #[derive(Serialize)]
    enum E {
        Unit,
        New(String),
        #[serde(rename = "status")]
        Status(String),
        Tuple(i8, String, Option<u8>),
        Struct {
            decision: Key,
            x: f32,
            items: Vec<E>,
        },
        #[serde(rename = "id")]
        Id(u8),
    }

    #[derive(Serialize)]
    enum Top {
        #[serde(rename = "id")]
        TupleId(u8, u8),
        #[serde(rename = "id")]
        StructId { a: u8 },
    }

    #[derive(Serialize)]
    struct Newtype(u16);

    #[derive(Serialize)]
    struct UnitStruct;

    #[derive(Serialize)]
    struct TupleStruct(i32, Option<u8>, ());

    #[derive(Serialize)]
    struct Shapes {
        decision: Key,
        status: E,
        #[serde(rename = "type")]
        kind: char,
        method: Newtype,
        unit: UnitStruct,
        tuple: TupleStruct,
        bytes: Bytes,
        variants: Vec<E>,
        floats: Vec<f32>,
        wide: (u128, i128, i128),
        none: Option<String>,
        nested: Option<Box<Shapes>>,
    }

    fn shapes(nested: Option<Box<Shapes>>) -> Shapes {
        Shapes {
            decision: Key::Agent,
            status: E::Status("held".into()),
            kind: 'é',
            method: Newtype(7),
            unit: UnitStruct,
            tuple: TupleStruct(-7, Some(3), ()),
            bytes: Bytes(&[0, 1, 200, 255]),
            variants: vec![
                E::Unit,
                E::New("x".into()),
                E::Tuple(-3, "y".into(), None),
                E::Struct {
                    decision: Key::First,
                    x: 0.1,
                    items: vec![E::Id(1), E::Status("s".into())],
                },
            ],
            floats: vec![0.1, -0.0, f32::NAN, f32::INFINITY, f32::MAX],
            wide: (
                u128::from(u64::MAX),
                i128::from(i64::MIN),
                i128::from(u64::MAX),
            ),
            none: None,
            nested,
        }
    }

    #[test]
    fn serde_shapes_encode_as_through_a_value() {
        assert_same(&shapes(Some(Box::new(shapes(None)))));
        for e in [
            E::Unit,
            E::New("x".into()),
            E::Status("s".into()),
            E::Tuple(1, "t".into(), Some(2)),
            E::Id(3),
        ] {
            assert_same(&e);
        }
        assert_same(&Top::TupleId(1, 2));
        assert_same(&Top::StructId { a: 1 });
        assert_same(&Some(Newtype(1)));
        assert_same(&UnitStruct);
        assert_same(&(1, "a", None::<u8>, ()));
        assert_same(&[f64::NAN, f64::NEG_INFINITY, 1e-300, -1.5]);
        assert_same(&Bytes(&[]));
    }

    #[test]
    fn maps_encode_as_through_a_value() {
        assert_same(&HashMap::from([
            (3i32, f64::NAN),
            (-1, 1.5),
            (10, f64::INFINITY),
        ]));
        assert_same(&BTreeMap::from([(true, ()), (false, ())]));
        assert_same(&BTreeMap::from([('z', u128::from(u64::MAX)), ('a', 0)]));
        assert_same(&BTreeMap::from([(Key::Agent, "k"), (Key::First, "v")]));
        assert_same(&BTreeMap::<String, u8>::new());
        assert_same(&Pairs(vec![(1.5f64, 1), (1e300, 2), (-0.0, 3), (0.1, 4)]));
        assert_same(&Pairs(vec![(0.1f32, 1), (f32::MAX, 2)]));
        assert_same(&Pairs(vec![(u128::MAX, 1)]));
        assert_same(&Pairs(vec![(i128::MIN, 1), (-1, 2)]));
        assert_same(&Pairs(vec![(Newtype(7), "v")]));
        // A key given twice keeps its last value, as `Map::insert` does.
        assert_same(&Pairs(vec![
            ("a", 1),
            ("b", 2),
            ("a", 3),
            ("agent", 4),
            ("agent", 5),
        ]));
        assert_same(&Pairs(vec![("id", 1), ("x", 2), ("id", 3)]));
        assert_same(&Pairs(vec![("agent", "first"), ("agent", "second")]));

        #[derive(Serialize)]
        struct Flat {
            a: u8,
            id: u8,
            #[serde(flatten)]
            rest: Map<String, Value>,
        }
        let mut rest = Map::new();
        rest.insert("a".into(), json!("again"));
        rest.insert("z".into(), json!({"y": 1, "x": 2}));
        rest.insert("id".into(), json!(9));
        assert_same(&Flat { a: 1, id: 2, rest });
    }

    #[test]
    fn sequences_with_wrong_length_hints() {
        assert_same(&Hinted(None, vec![]));
        assert_same(&Hinted(None, vec![1, 2, 3]));
        assert_same(&Hinted(Some(5), vec![1, 2]));
        assert_same(&Hinted(Some(0), (0..300).collect()));
        assert_same(&Hinted(Some(300), vec![1]));
        let long: Vec<u32> = (0..1000).collect();
        assert_same(&Pairs(vec![
            ("a", Hinted(None, long)),
            ("b", Hinted(Some(1), vec![])),
        ]));
    }

    #[test]
    fn what_serde_json_rejects_is_an_error_and_writes_nothing() {
        fn rejected<T: Serialize>(v: &T) {
            assert!(serde_json::to_value(v).is_err());
            let mut out = b"prefix".to_vec();
            assert!(put_serialize(&mut out, v, None).is_err());
            assert_eq!(out, b"prefix");
        }
        rejected(&u128::MAX);
        rejected(&i128::MIN);
        rejected(&Pairs(vec![("a", vec![1u128, u128::MAX])]));
        rejected(&Pairs(vec![(vec![1u8], 1)]));
        rejected(&Pairs(vec![(f64::NAN, 1)]));
        rejected(&Pairs(vec![(None::<u8>, 1)]));
        rejected(&Pairs(vec![((), 1)]));
    }

    /// Old (through a `Value`) and new encoding of a record, per record, as `Row::new` does it.
    #[test]
    #[ignore = "a timing to read, not a check: cargo test --release -p sudomode-store --lib \
                encode_timing -- --ignored --nocapture"]
    fn encode_timing() {
        use std::hint::black_box;
        use std::time::Instant;

        fn per_call(f: impl Fn() -> Vec<u8>) -> f64 {
            const N: u32 = 200_000;
            for _ in 0..N / 10 {
                black_box(f());
            }
            let start = Instant::now();
            for _ in 0..N {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / f64::from(N)
        }
        for (name, rec) in [
            ("testing::record", crate::testing::record(ID)),
            ("full_record", full_record()),
        ] {
            let old = per_call(|| {
                let mut value = serde_json::to_value(black_box(&rec)).expect("to_value");
                if let Value::Object(m) = &mut value {
                    m.remove("id");
                }
                let mut pre = Vec::with_capacity(512);
                put_value(&mut pre, &value, None);
                pre
            });
            let new = per_call(|| {
                let mut pre = Vec::with_capacity(512);
                put_serialize(&mut pre, black_box(&rec), Some("id")).expect("encode");
                pre
            });
            println!(
                "{name}: through a Value {old:.0} ns, direct {new:.0} ns ({:.1}x)",
                old / new
            );
        }
    }
}
