//! Indexes for the history filters (SPEC §8, §11 "Months of traffic"): for
//! each of agent, resource, action, decision and status, the ids of the
//! requests with a given value, in posting blocks of up to [`BLOCK`] ids kept
//! sorted. A block's key is the field, the value and its first id, so the
//! writer rewrites one block per value per group commit, and a listing walks
//! a value's ids newest first without touching other requests. Time bounds
//! come from the ids themselves (UUIDv7), so they need no index.
//!
//! The same filters in SQL are plain B-tree indexes on
//! `(agent, id)`, `(resource, id)`, `(action, id)`, `(decision, id)`,
//! `(status, id)`.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table};

use crate::codec::{CodecError, Reader, put_varint};
use crate::error::StoreError;

/// Most ids in one posting block, and most bytes (one 4 KiB page with its key).
const BLOCK: usize = 512;
const BLOCK_BYTES: usize = 3_800;

/// The indexed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Agent = 1,
    Resource = 2,
    Action = 3,
    Decision = 4,
    Status = 5,
}

/// Key prefix of one (field, value).
pub(crate) fn prefix(field: Field, value: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 4);
    p.push(field as u8);
    put_varint(&mut p, value.len() as u64);
    p.extend_from_slice(value.as_bytes());
    p
}

fn block_key(prefix: &[u8], first: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(first);
    k
}

/// Worst-case encoded size of one id in a block: its (capped) length and two
/// header bytes. Blocks are split on it, so each fits one page.
fn id_cost(id: &[u8]) -> usize {
    id.len().min(255) + 2
}

/// A block: ids in ascending order, each as (bytes shared with the previous
/// id, length of the rest, the rest): neighbouring UUIDv7 ids share their
/// time prefix. Calls `each` with every id in order; returns the last one
/// (empty for an empty block).
fn walk_block(v: &[u8], mut each: impl FnMut(&[u8])) -> Result<Vec<u8>, CodecError> {
    let mut r = Reader::new(v);
    let mut id: Vec<u8> = Vec::new();
    while !r.at_end() {
        let shared = usize::from(r.byte()?);
        let n = usize::from(r.byte()?);
        if shared > id.len() {
            return Err(CodecError("posting block"));
        }
        id.truncate(shared);
        id.extend_from_slice(r.take(n)?);
        each(&id);
    }
    Ok(id)
}

fn decode_block(v: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut ids = Vec::new();
    walk_block(v, |id| ids.push(id.to_vec()))?;
    Ok(ids)
}

fn encode_block(ids: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 12);
    let mut prev: &[u8] = &[];
    for id in ids {
        let id = &id[..id.len().min(255)];
        push_id(&mut out, prev, id);
        prev = id;
    }
    out
}

/// Appends `id` to an encoded block whose newest id is `last` (or which is empty).
fn push_id(out: &mut Vec<u8>, last: &[u8], id: &[u8]) {
    let shared = last.iter().zip(id).take_while(|(a, b)| a == b).count();
    out.push(shared as u8);
    out.push((id.len() - shared) as u8);
    out.extend_from_slice(&id[shared..]);
}

/// Splits a block's ids into parts that each encode within one 4 KiB page.
fn parts(ids: &[Vec<u8>]) -> Vec<&[Vec<u8>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, id) in ids.iter().enumerate() {
        let cost = id_cost(id);
        if i > start && (bytes + cost > BLOCK_BYTES || i - start >= BLOCK) {
            out.push(&ids[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

type IndexTable<'t> = Table<'t, &'static [u8], &'static [u8]>;
/// A stored block: its key and its encoded ids.
type Stored = (Vec<u8>, Vec<u8>);

/// The stored block that holds (or would hold) `id` under `prefix`: its key and value.
fn covering_block(
    t: &IndexTable<'_>,
    prefix: &[u8],
    id: &[u8],
) -> Result<Option<Stored>, StoreError> {
    let probe = block_key(prefix, id);
    if let Some(item) = t.range::<&[u8]>(prefix..=probe.as_slice())?.next_back() {
        let (k, v) = item?;
        if k.value().starts_with(prefix) {
            return Ok(Some((k.value().to_vec(), v.value().to_vec())));
        }
    }
    // Older than every block: the first one takes it.
    if let Some(item) = t.range::<&[u8]>(prefix..)?.next() {
        let (k, v) = item?;
        if k.value().starts_with(prefix) {
            return Ok(Some((k.value().to_vec(), v.value().to_vec())));
        }
    }
    Ok(None)
}

/// The ids a stored block takes: from its key (or from nothing, for the
/// first block of a value) up to the next block's key.
struct Span {
    key: Vec<u8>,
    from_start: bool,
    upper: Option<Vec<u8>>,
}

impl Span {
    fn of(t: &IndexTable<'_>, prefix: &[u8], key: &[u8], probe: &[u8]) -> Result<Self, StoreError> {
        let upper = match t
            .range::<&[u8]>((std::ops::Bound::Excluded(key), std::ops::Bound::Unbounded))?
            .next()
        {
            Some(item) => {
                let (k, _) = item?;
                k.value().starts_with(prefix).then(|| k.value().to_vec())
            }
            None => None,
        };
        Ok(Span {
            key: key.to_vec(),
            // Found as the first block for an id older than every block.
            from_start: key > probe,
            upper,
        })
    }

    fn covers(&self, probe: &[u8]) -> bool {
        (self.from_start || probe >= self.key.as_slice())
            && self.upper.as_deref().is_none_or(|u| probe < u)
    }
}

/// One block being changed by a group commit. Ids arrive mostly newer than
/// every stored one (UUIDv7), so a block stays in its encoded form while ids
/// are only appended at its end; an id added inside it or removed from it
/// decodes it.
enum Edit {
    Tail {
        bytes: Vec<u8>,
        /// Its newest id (empty while it has none).
        last: Vec<u8>,
        count: usize,
        /// Bytes the ids would take unshared (what [`parts`] counts).
        worst: usize,
    },
    Ids(Vec<Vec<u8>>),
}

impl Edit {
    /// A block not yet stored.
    fn empty() -> Self {
        Edit::Tail {
            bytes: Vec::new(),
            last: Vec::new(),
            count: 0,
            worst: 0,
        }
    }

    fn load(bytes: Vec<u8>) -> Result<Self, CodecError> {
        let (mut count, mut worst) = (0, 0);
        let last = walk_block(&bytes, |id| {
            count += 1;
            worst += id_cost(id);
        })?;
        Ok(Edit::Tail {
            bytes,
            last,
            count,
            worst,
        })
    }

    fn decoded(&mut self) -> Result<&mut Vec<Vec<u8>>, CodecError> {
        if let Edit::Tail { bytes, .. } = self {
            *self = Edit::Ids(decode_block(bytes)?);
        }
        match self {
            Edit::Ids(ids) => Ok(ids),
            Edit::Tail { .. } => Err(CodecError("posting block")),
        }
    }

    fn add(&mut self, id: Vec<u8>) -> Result<(), CodecError> {
        if let Edit::Tail {
            bytes,
            last,
            count,
            worst,
        } = self
            && (*count == 0 || id > *last)
            && id.len() <= 255
        {
            push_id(bytes, last, &id);
            *count += 1;
            *worst += id_cost(&id);
            *last = id;
            return Ok(());
        }
        let list = self.decoded()?;
        if let Err(i) = list.binary_search(&id) {
            list.insert(i, id);
        }
        Ok(())
    }

    fn remove(&mut self, id: &[u8]) -> Result<(), CodecError> {
        if let Edit::Tail { last, count, .. } = self
            && (*count == 0 || id > last.as_slice())
        {
            return Ok(());
        }
        let list = self.decoded()?;
        if let Ok(i) = list.binary_search_by(|x| x.as_slice().cmp(id)) {
            list.remove(i);
        }
        Ok(())
    }

    /// Writes the block back: in place while it still fits one block, else as parts.
    fn store(self, t: &mut IndexTable<'_>, key: &[u8], prefix: &[u8]) -> Result<(), StoreError> {
        let ids = match self {
            Edit::Tail {
                bytes,
                count,
                worst,
                ..
            } if count > 0 && count <= BLOCK && worst <= BLOCK_BYTES => {
                // Its first id, hence its key, did not change.
                t.insert(key, bytes.as_slice())?;
                return Ok(());
            }
            Edit::Tail { bytes, .. } => decode_block(&bytes).map_err(corrupt)?,
            Edit::Ids(ids) => ids,
        };
        t.remove(key)?;
        for part in parts(&ids) {
            let k = block_key(prefix, &part[0]);
            t.insert(k.as_slice(), encode_block(part).as_slice())?;
        }
        Ok(())
    }
}

/// Posting changes gathered over one group commit, applied at its end.
#[derive(Default)]
pub(crate) struct Changes {
    add: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    remove: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl Changes {
    pub(crate) fn add(&mut self, field: Field, value: &str, id: &[u8]) {
        self.add
            .entry(prefix(field, value))
            .or_default()
            .push(id.to_vec());
    }

    pub(crate) fn remove(&mut self, field: Field, value: &str, id: &[u8]) {
        self.remove
            .entry(prefix(field, value))
            .or_default()
            .push(id.to_vec());
    }

    /// Writes the changes: each touched block is read and written once.
    pub(crate) fn apply(self, t: &mut IndexTable<'_>) -> Result<(), StoreError> {
        let mut open = OpenBlocks::default();
        let all = self
            .remove
            .into_iter()
            .map(|(p, ids)| (p, ids, false))
            .chain(self.add.into_iter().map(|(p, ids)| (p, ids, true)));
        for (prefix, mut ids, adding) in all {
            ids.sort_unstable();
            // The stored block the last id fell in, and the ids it covers: the
            // ids of one group are mostly the newest, so one lookup serves them all.
            let mut span: Option<Span> = None;
            for id in ids {
                let Some(edit) = open.block_for(t, &prefix, &id, adding, &mut span)? else {
                    continue;
                };
                if adding {
                    edit.add(id).map_err(corrupt)?;
                } else {
                    edit.remove(&id).map_err(corrupt)?;
                }
            }
        }
        for (key, (prefix, edit)) in open.blocks {
            edit.store(t, &key, &prefix)?;
        }
        Ok(())
    }
}

fn corrupt(e: CodecError) -> StoreError {
    StoreError::corrupt("request_index", e)
}

/// The blocks one apply changes.
#[derive(Default)]
struct OpenBlocks {
    /// Stored (or new) block key → (prefix, block).
    blocks: BTreeMap<Vec<u8>, (Vec<u8>, Edit)>,
    /// The new block of each prefix that had none stored.
    fresh: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl OpenBlocks {
    /// The block `id` belongs in under `prefix`, loaded on first use; a new
    /// one when adding to a value with no block, none when removing from it.
    fn block_for(
        &mut self,
        t: &IndexTable<'_>,
        prefix: &[u8],
        id: &[u8],
        adding: bool,
        span: &mut Option<Span>,
    ) -> Result<Option<&mut Edit>, StoreError> {
        let probe = block_key(prefix, id);
        let key = if let Some(s) = span.as_ref().filter(|s| s.covers(&probe)) {
            s.key.clone()
        } else if let Some((k, v)) = covering_block(t, prefix, id)? {
            *span = Some(Span::of(t, prefix, &k, &probe)?);
            if !self.blocks.contains_key(&k) {
                let edit = Edit::load(v).map_err(corrupt)?;
                self.blocks.insert(k.clone(), (prefix.to_vec(), edit));
            }
            k
        } else if let Some(k) = self.fresh.get(prefix) {
            k.clone()
        } else if adding {
            self.fresh.insert(prefix.to_vec(), probe.clone());
            self.blocks
                .insert(probe.clone(), (prefix.to_vec(), Edit::empty()));
            probe
        } else {
            return Ok(None);
        };
        Ok(self.blocks.get_mut(&key).map(|(_, edit)| edit))
    }
}

/// Ids under one (field, value), newest first, below an exclusive bound.
pub(crate) struct Postings<'t, T: ReadableTable<&'static [u8], &'static [u8]>> {
    table: &'t T,
    prefix: Vec<u8>,
    /// Ids of the current block still to hand out, ascending (popped from the end).
    pending: Vec<Vec<u8>>,
    /// Next block key to read is below this one.
    next_block_below: Option<Vec<u8>>,
    done: bool,
}

impl<'t, T: ReadableTable<&'static [u8], &'static [u8]>> Postings<'t, T> {
    /// Ids `< below` (all when `None`).
    pub(crate) fn new(
        table: &'t T,
        field: Field,
        value: &str,
        below: Option<&[u8]>,
    ) -> Result<Self, StoreError> {
        let prefix = prefix(field, value);
        let mut p = Postings {
            table,
            prefix,
            pending: Vec::new(),
            next_block_below: None,
            done: false,
        };
        let start = match below {
            Some(b) => block_key(&p.prefix, b),
            None => {
                let mut k = p.prefix.clone();
                k.push(0xff);
                k
            }
        };
        p.load_before(&start, true)?;
        if let Some(b) = below {
            p.pending.retain(|id| id.as_slice() < b);
        }
        Ok(p)
    }

    /// Loads the block with the greatest key `< key` (or `<= key` when `inclusive`).
    fn load_before(&mut self, key: &[u8], inclusive: bool) -> Result<(), StoreError> {
        let mut range = if inclusive {
            self.table.range::<&[u8]>(self.prefix.as_slice()..=key)?
        } else {
            self.table.range::<&[u8]>(self.prefix.as_slice()..key)?
        };
        match range.next_back() {
            Some(item) => {
                let (k, v) = item?;
                if !k.value().starts_with(&self.prefix) {
                    self.done = true;
                    return Ok(());
                }
                self.pending = decode_block(v.value()).map_err(corrupt)?;
                self.next_block_below = Some(k.value().to_vec());
            }
            None => self.done = true,
        }
        Ok(())
    }

    /// The next id, newest first.
    pub(crate) fn next_id(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        loop {
            if let Some(id) = self.pending.pop() {
                return Ok(Some(id));
            }
            if self.done {
                return Ok(None);
            }
            match self.next_block_below.take() {
                Some(k) => self.load_before(&k, false)?,
                None => return Ok(None),
            }
        }
    }

    /// Number of blocks under this value (a cheap size estimate).
    pub(crate) fn blocks(table: &T, field: Field, value: &str) -> Result<usize, StoreError> {
        let p = prefix(field, value);
        let mut n = 0;
        for item in table.range::<&[u8]>(p.as_slice()..)? {
            let (k, _) = item?;
            if !k.value().starts_with(&p) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Membership checks against one (field, value), keeping the last block it
/// decoded: a listing probes ids newest first, so neighbouring probes mostly
/// land in the same block and only the first one there pays for decoding it.
pub(crate) struct Probe {
    prefix: Vec<u8>,
    /// Key of the cached block and its ids, ascending.
    block: Option<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl Probe {
    pub(crate) fn new(field: Field, value: &str) -> Self {
        Probe {
            prefix: prefix(field, value),
            block: None,
        }
    }

    /// Whether `id` is listed under this probe's (field, value).
    pub(crate) fn contains<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        table: &T,
        id: &[u8],
    ) -> Result<bool, StoreError> {
        if let Some((_, ids)) = &self.block
            && let (Some(first), Some(last)) = (ids.first(), ids.last())
            && first.as_slice() <= id
            && id <= last.as_slice()
        {
            return Ok(ids.binary_search_by(|x| x.as_slice().cmp(id)).is_ok());
        }
        let probe = block_key(&self.prefix, id);
        let Some(item) = table
            .range::<&[u8]>(self.prefix.as_slice()..=probe.as_slice())?
            .next_back()
        else {
            return Ok(false);
        };
        let (k, v) = item?;
        if !k.value().starts_with(&self.prefix) {
            return Ok(false);
        }
        let same = self
            .block
            .as_ref()
            .is_some_and(|(key, _)| key.as_slice() == k.value());
        if !same {
            let ids = decode_block(v.value()).map_err(corrupt)?;
            self.block = Some((k.value().to_vec(), ids));
        }
        Ok(self
            .block
            .as_ref()
            .is_some_and(|(_, ids)| ids.binary_search_by(|x| x.as_slice().cmp(id)).is_ok()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use redb::{Database, ReadableDatabase};

    use super::*;
    use crate::layout::INDEX;

    /// Many groups of adds and removes, in and out of order, against a model.
    #[test]
    fn postings_follow_a_model_across_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("i.redb")).expect("db");
        let mut model: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut x: u64 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let id = |n: u64| {
            let mut k = vec![0u8];
            k.extend_from_slice(&n.to_be_bytes());
            k.extend_from_slice(&[9u8; 8]);
            k
        };
        for round in 0..60u64 {
            let mut c = Changes::default();
            // The writer never adds and removes the same (value, id) in one group.
            let before = model.clone();
            for i in 0..40u64 {
                // Mostly new (rising) ids, some older ones, some removals.
                let n = match next() % 10 {
                    0 => next() % (round * 40 + 1),
                    _ => round * 40 + i,
                };
                if next() % 7 == 0 && !before.is_empty() {
                    let victim = before.iter().nth((next() as usize) % before.len()).cloned();
                    if let Some(v) = victim.filter(|v| model.contains(v)) {
                        c.remove(Field::Agent, "a", &v);
                        model.remove(&v);
                    }
                } else if !before.contains(&id(n)) {
                    c.add(Field::Agent, "a", &id(n));
                    c.add(Field::Resource, "r", &id(n));
                    model.insert(id(n));
                }
            }
            let txn = db.begin_write().expect("write");
            c.apply(&mut txn.open_table(INDEX).expect("table"))
                .expect("apply");
            txn.commit().expect("commit");
            let rtx = db.begin_read().expect("read");
            let t = rtx.open_table(INDEX).expect("table");
            let mut n = 0;
            let mut p = Postings::new(&t, Field::Agent, "a", None).expect("postings");
            while p.next_id().expect("next").is_some() {
                n += 1;
            }
            assert_eq!(n, model.len(), "round {round}");
        }
        let rtx = db.begin_read().expect("read");
        let t = rtx.open_table(INDEX).expect("table");
        let mut got = Vec::new();
        let mut p = Postings::new(&t, Field::Agent, "a", None).expect("postings");
        while let Some(k) = p.next_id().expect("next") {
            got.push(k);
        }
        let want: Vec<Vec<u8>> = model.iter().rev().cloned().collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "postings differ from the model");
        // One probe, ids newest first as a listing asks (it reuses decoded
        // blocks), then in random order: members and non-members both.
        let mut probe = Probe::new(Field::Agent, "a");
        for n in (0..60 * 40 + 5).rev() {
            let k = id(n);
            let got = probe.contains(&t, &k).expect("contains");
            assert_eq!(got, model.contains(&k), "id {n}, newest first");
        }
        let mut probe = Probe::new(Field::Agent, "a");
        for _ in 0..500 {
            let k = id(next() % (60 * 40 + 5));
            let got = probe.contains(&t, &k).expect("contains");
            assert_eq!(got, model.contains(&k), "random order");
        }
        assert!(
            !Probe::new(Field::Agent, "b")
                .contains(&t, &id(1))
                .expect("contains")
        );
        // Every block is sorted, within one page, and keyed by its first id.
        let mut n_blocks = 0;
        for item in t.iter().expect("iter") {
            let (k, v) = item.expect("block");
            let ids = decode_block(v.value()).expect("decodes");
            let p = prefix(Field::Agent, "a");
            let p = if k.value().starts_with(&p) {
                p
            } else {
                prefix(Field::Resource, "r")
            };
            assert_eq!(k.value(), block_key(&p, &ids[0]).as_slice());
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "block sorted");
            assert!(ids.len() <= BLOCK && v.value().len() <= BLOCK_BYTES);
            n_blocks += 1;
        }
        assert!(n_blocks > 4, "the test splits blocks ({n_blocks})");
        // Below a cursor.
        let mid = want[want.len() / 2].clone();
        let mut p = Postings::new(&t, Field::Agent, "a", Some(&mid)).expect("postings");
        let first = p.next_id().expect("next");
        assert_eq!(first.as_ref(), want.get(want.len() / 2 + 1));
    }
}
