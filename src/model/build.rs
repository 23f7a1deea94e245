//! Building a release of the model from a catalog: the head and the shards to write.
//!
//! A *full* build partitions every item into `base_shards` shards (as many as it takes for
//! shards of about [`SHARD_TARGET_BYTES`], none over [`SHARD_MAX_BYTES`]) and names the base by
//! a hash of its records. An *incremental* build, given the previous release's head and
//! [`BaseIndex`], compares every item's record with the base's and puts the ones that differ
//! (and tombstones of removed items) into the patch layer's shards; only patch shards whose
//! bytes changed are written. When a patch shard would outgrow [`SHARD_MAX_BYTES`], the build
//! is a full one instead (compaction). The head is written on every release.
//!
//! Items are read through [`Source`], so a catalog held in memory ([`Catalog`]) and a generated
//! one of ten million items (read item by item) build the same way.

use super::{
    content_hash, encode, item_hash, patch_key, stored_len, Card, HeadDoc, Listed, ModelError,
    Record, Related, ShardDoc, ShardRef, CATEGORY_TOP_LEN, PATCH_RATIO, POPULAR_LEN,
    SHARD_MAX_BYTES, SHARD_TARGET_BYTES,
};
use crate::catalog::Catalog;
use crate::error::FieldError;

/// Bytes a shard adds around its records (format byte, array headers).
const SHARD_OVERHEAD: usize = 16;

/// A catalog the builder reads item by item.
pub trait Source {
    /// Catalog version label.
    fn version(&self) -> &str;
    /// Category names; cards index them (+1).
    fn categories(&self) -> &[String];
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Item `i`'s card.
    fn card(&self, i: usize) -> Card;
    /// Item `i`'s popularity.
    fn popularity(&self, i: usize) -> f32;
    /// Item `i`'s full record (related list best first, at most [`crate::catalog::MAX_RELATED`]).
    fn record(&self, i: usize) -> Record;
}

impl Source for Catalog {
    fn version(&self) -> &str {
        &self.version
    }
    fn categories(&self) -> &[String] {
        &self.categories
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn card(&self, i: usize) -> Card {
        let it = &self.items[i];
        Card {
            id: it.id.clone(),
            category: it.category.map_or(0, |c| c + 1),
            available: it.available,
            price: it.price.map_or(0, |p| (p * 100.0).round() as u64 + 1),
            title: it.title.as_deref().unwrap_or_default().into(),
            key: 0,
        }
    }
    fn popularity(&self, i: usize) -> f32 {
        self.items[i].popularity
    }
    fn record(&self, i: usize) -> Record {
        Record {
            card: self.card(i),
            popularity: self.items[i].popularity,
            tags: self.items[i].tags.clone(),
            related: self.related[i]
                .iter()
                .map(|&(r, score)| Related {
                    card: self.card(r as usize),
                    score,
                    feedback: self.feedback_of(i, r),
                })
                .collect(),
        }
    }
}

/// Per item of a base: (item hash, record hash), sorted; kept by the publisher next to its
/// output (not in KV) so the next release can tell which records changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseIndex(Vec<(u64, u64)>);

impl BaseIndex {
    /// 16 bytes per item, big endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 16);
        for (a, b) in &self.0 {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
        }
        out
    }

    /// Reads [`BaseIndex::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<BaseIndex, ModelError> {
        if b.len() % 16 != 0 {
            return Err(ModelError::Parse(
                "index length is not a multiple of 16".into(),
            ));
        }
        let word = |c: &[u8]| u64::from_be_bytes(c.try_into().unwrap_or_default());
        let v: Vec<(u64, u64)> = b
            .chunks_exact(16)
            .map(|c| (word(&c[..8]), word(&c[8..])))
            .collect();
        if !v.windows(2).all(|w| w[0] <= w[1]) {
            return Err(ModelError::Parse("index is not sorted".into()));
        }
        Ok(BaseIndex(v))
    }

    /// The base's record hash for an item hash; `None` when absent or when two items share
    /// the hash (then the record is treated as changed, which is always safe).
    fn get(&self, item: u64) -> Option<u64> {
        let at = self.0.partition_point(|e| e.0 < item);
        match self.0.get(at..at + 2) {
            Some([a, b]) if a.0 == item && b.0 == item => None,
            _ => self.0.get(at).filter(|e| e.0 == item).map(|e| e.1),
        }
    }

    /// Items in the base.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the base is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The release an incremental build starts from.
#[derive(Debug, Clone)]
pub struct Previous {
    /// Its head.
    pub head: super::Head,
    /// Its base's index.
    pub index: BaseIndex,
}

/// A built release.
#[derive(Debug, Clone)]
pub struct Release {
    /// Head bytes (stored under [`super::head_key`] of `head_hash`).
    pub head: Vec<u8>,
    /// Content hash of the head.
    pub head_hash: String,
    /// Index of the base this head reads (new after a full build, else the previous one).
    pub index: BaseIndex,
    /// Counts.
    pub stats: ReleaseStats,
}

/// What a build did, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseStats {
    /// Items.
    pub items: u64,
    /// Whether a new base was built (first release, or compaction).
    pub full: bool,
    /// Base shards.
    pub base_shards: u32,
    /// Patch shards (including empty ones, which are not stored).
    pub patch_shards: u32,
    /// Records in the patch layer (changed since the base) and tombstones.
    pub patched: u64,
    /// Shards written by this release.
    pub shards_written: u64,
    /// Bytes of those shards (stored form).
    pub bytes_written: u64,
    /// Largest stored shard of this release, bytes.
    pub max_shard_bytes: u64,
    /// Head bytes.
    pub head_bytes: u64,
}

/// A shard a build writes: its KV key, and where it sits (index, and its layer's shard count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// KV key.
    pub key: String,
    /// Which shard.
    pub at: ShardRef,
    /// Shards in its layer.
    pub layer: u32,
}

/// Builds a release: `put(shard, bytes)` receives every shard to write (stored form is
/// [`super::to_stored`] of the bytes); the head comes back in the [`Release`] and is written
/// after the shards, then the pointer.
pub fn build(
    src: &dyn Source,
    prev: Option<&Previous>,
    put: &mut dyn FnMut(Written, Vec<u8>),
) -> Result<Release, ModelError> {
    if let Some(p) = prev.filter(|p| p.head.base_shards > 0 && !p.index.is_empty()) {
        if let Some(r) = patch(src, p, put)? {
            return Ok(r);
        }
    }
    full(src, put)
}

/// Categories of a release: the previous head's first (base shards keep their indices), then
/// the source's new ones; and the source index → release index map.
fn categories(src: &dyn Source, prev: Option<&[String]>) -> (Vec<String>, Vec<u32>) {
    let mut names: Vec<String> = prev.map(<[String]>::to_vec).unwrap_or_default();
    let map = src
        .categories()
        .iter()
        .map(|c| match names.iter().position(|n| n == c) {
            Some(i) => i as u32,
            None => {
                names.push(c.clone());
                (names.len() - 1) as u32
            }
        })
        .collect();
    (names, map)
}

fn remap_card(c: &mut Card, map: &[u32]) {
    if let Some(k) = c.category.checked_sub(1) {
        c.category = map.get(k as usize).map_or(0, |m| m + 1);
    }
}

fn record(src: &dyn Source, i: usize, map: &[u32]) -> Record {
    let mut r = src.record(i);
    remap_card(&mut r.card, map);
    r.related
        .iter_mut()
        .for_each(|x| remap_card(&mut x.card, map));
    r
}

fn record_hash(bytes: &[u8]) -> u64 {
    crate::experiment::fnv1a64(&[bytes])
}

/// Per item: hash, and its record's size and hash.
struct Scan {
    hashes: Vec<u64>,
    sizes: Vec<u32>,
    records: Vec<u64>,
}

fn scan(src: &dyn Source, map: &[u32]) -> Result<Scan, ModelError> {
    let n = src.len();
    let mut s = Scan {
        hashes: Vec::with_capacity(n),
        sizes: Vec::with_capacity(n),
        records: Vec::with_capacity(n),
    };
    let mut buf = Vec::new();
    for i in 0..n {
        let r = record(src, i, map);
        buf.clear();
        let _ = rmp_serde::encode::write(&mut buf, &r);
        if stored_len(buf.len() + SHARD_OVERHEAD) > SHARD_MAX_BYTES {
            return Err(ModelError::Invalid(vec![FieldError::new(
                format!("items[{i}]"),
                "record too large for a shard (64 KiB): shorten its title, tags or related list",
            )]));
        }
        s.hashes.push(item_hash(&r.card.id));
        s.sizes.push(buf.len() as u32);
        s.records.push(record_hash(&buf));
    }
    Ok(s)
}

/// Items grouped by shard (`hash % shards`), each group in item order.
fn groups(hashes: &[u64], of: impl Iterator<Item = usize>, shards: u32) -> Vec<Vec<u32>> {
    let mut g = vec![Vec::new(); shards as usize];
    for i in of {
        g[(hashes[i] % u64::from(shards)) as usize].push(i as u32);
    }
    g
}

fn shard_bytes(src: &dyn Source, items: &[u32], gone: Vec<u64>, map: &[u32]) -> Vec<u8> {
    let mut records: Vec<Record> = items
        .iter()
        .map(|&i| record(src, i as usize, map))
        .collect();
    records.sort_by(|a, b| a.card.id.cmp(&b.card.id));
    encode(&ShardDoc { records, gone })
}

fn full(src: &dyn Source, put: &mut dyn FnMut(Written, Vec<u8>)) -> Result<Release, ModelError> {
    let (names, map) = categories(src, None);
    let s = scan(src, &map)?;
    let total: usize = s.sizes.iter().map(|&b| b as usize).sum();
    let mut shards = (stored_len(total) / SHARD_TARGET_BYTES).max(1) as u32;
    if src.is_empty() {
        shards = 0;
    }
    // Hashing spreads items unevenly: grow the count until the fullest shard fits.
    while shards > 0 {
        let mut sum = vec![SHARD_OVERHEAD; shards as usize];
        for (h, &b) in s.hashes.iter().zip(&s.sizes) {
            sum[(h % u64::from(shards)) as usize] += b as usize;
        }
        if sum.iter().all(|&b| stored_len(b) <= SHARD_MAX_BYTES) {
            break;
        }
        shards += shards / 4 + 1;
    }
    let mut index: Vec<(u64, u64)> = s.hashes.iter().copied().zip(s.records).collect();
    index.sort_unstable();
    let index = BaseIndex(index);
    let mut id_src = shards.to_be_bytes().to_vec();
    id_src.extend(index.to_bytes());
    let base = content_hash(&id_src);
    let mut stats = ReleaseStats {
        full: true,
        base_shards: shards,
        ..Default::default()
    };
    for (i, items) in groups(&s.hashes, 0..src.len(), shards.max(1))
        .iter()
        .enumerate()
        .take(shards as usize)
    {
        let bytes = shard_bytes(src, items, Vec::new(), &map);
        note(&mut stats, bytes.len());
        let w = Written {
            key: super::base_key(&base, i as u32),
            at: ShardRef::Base(i as u32),
            layer: shards,
        };
        put(w, bytes);
    }
    let patch = vec![0u64; shards.div_ceil(PATCH_RATIO) as usize];
    Ok(head(src, names, &map, base, shards, patch, index, stats))
}

fn note(stats: &mut ReleaseStats, bytes: usize) {
    let stored = stored_len(bytes) as u64;
    stats.shards_written += 1;
    stats.bytes_written += stored;
    stats.max_shard_bytes = stats.max_shard_bytes.max(stored);
}

/// An incremental build on `prev`'s base, or `None` when the patch layer would overflow.
fn patch(
    src: &dyn Source,
    prev: &Previous,
    put: &mut dyn FnMut(Written, Vec<u8>),
) -> Result<Option<Release>, ModelError> {
    let m = prev.head.patch.len() as u32;
    if m == 0 {
        return Ok(None);
    }
    let (names, map) = categories(src, Some(&prev.head.categories));
    let s = scan(src, &map)?;
    let changed = (0..src.len()).filter(|&i| prev.index.get(s.hashes[i]) != Some(s.records[i]));
    let mut by_shard = groups(&s.hashes, changed, m);
    let mut present = s.hashes.clone();
    present.sort_unstable();
    let mut gone = vec![Vec::new(); m as usize];
    for &(h, _) in &prev.index.0 {
        if present.binary_search(&h).is_err() {
            gone[(h % u64::from(m)) as usize].push(h);
        }
    }
    let mut stats = ReleaseStats {
        base_shards: prev.head.base_shards,
        ..Default::default()
    };
    let mut hashes = vec![0u64; m as usize];
    let mut writes = Vec::new();
    for (p, items) in by_shard.iter_mut().enumerate() {
        let mut g = std::mem::take(&mut gone[p]);
        g.sort_unstable();
        g.dedup();
        if items.is_empty() && g.is_empty() {
            continue;
        }
        stats.patched += (items.len() + g.len()) as u64;
        let bytes = shard_bytes(src, items, g, &map);
        if stored_len(bytes.len()) > SHARD_MAX_BYTES {
            return Ok(None);
        }
        let h = u64::from_str_radix(&content_hash(&bytes), 16)
            .unwrap_or(1)
            .max(1);
        hashes[p] = h;
        stats.max_shard_bytes = stats.max_shard_bytes.max(stored_len(bytes.len()) as u64);
        if !prev.head.patch.contains(&h) {
            let w = Written {
                key: patch_key(h),
                at: ShardRef::Patch(p as u32),
                layer: m,
            };
            writes.push((w, bytes));
        }
    }
    for (key, bytes) in writes {
        let max = stats.max_shard_bytes;
        note(&mut stats, bytes.len());
        stats.max_shard_bytes = max;
        put(key, bytes);
    }
    let base = prev.head.base.clone();
    let shards = prev.head.base_shards;
    Ok(Some(head(
        src,
        names,
        &map,
        base,
        shards,
        hashes,
        prev.index.clone(),
        stats,
    )))
}

/// The candidate lists: global and per-category tops of available items by popularity (desc),
/// then id (asc), kept to the lengths decisions read.
fn lists(src: &dyn Source, ncat: usize, map: &[u32]) -> (Vec<Listed>, Vec<u32>, Vec<Vec<u32>>) {
    type Top = Vec<(f32, String, usize)>;
    let better = |a: &(f32, String, usize), b: &(f32, String, usize)| {
        b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1))
    };
    let offer = |top: &mut Top, e: (f32, String, usize), len: usize| {
        if top.len() == len && better(&e, &top[len - 1]).is_ge() {
            return;
        }
        let at = top.partition_point(|x| better(x, &e).is_lt());
        top.insert(at, e);
        top.truncate(len);
    };
    let mut popular: Top = Vec::new();
    let mut per_cat: Vec<Top> = vec![Vec::new(); ncat];
    for i in 0..src.len() {
        let mut card = src.card(i);
        if !card.available {
            continue;
        }
        remap_card(&mut card, map);
        let pop = src.popularity(i);
        let e = || (pop, card.id.clone(), i);
        if popular.len() < POPULAR_LEN || better(&e(), &popular[POPULAR_LEN - 1]).is_lt() {
            offer(&mut popular, e(), POPULAR_LEN);
        }
        if let Some(c) = card.category() {
            let top = &mut per_cat[c as usize];
            if top.len() < CATEGORY_TOP_LEN || better(&e(), &top[CATEGORY_TOP_LEN - 1]).is_lt() {
                offer(top, e(), CATEGORY_TOP_LEN);
            }
        }
    }
    let mut listed: Vec<Listed> = Vec::new();
    let mut at: Vec<(usize, u32)> = Vec::new();
    let mut slot = |i: usize, pop: f32| -> u32 {
        if let Some(&(_, s)) = at.iter().find(|x| x.0 == i) {
            return s;
        }
        let mut card = src.card(i);
        remap_card(&mut card, map);
        listed.push(Listed {
            card,
            popularity: pop,
        });
        at.push((i, listed.len() as u32 - 1));
        listed.len() as u32 - 1
    };
    let popular_idx: Vec<u32> = popular.iter().map(|e| slot(e.2, e.0)).collect();
    let cat_idx: Vec<Vec<u32>> = per_cat
        .iter()
        .map(|t| t.iter().map(|e| slot(e.2, e.0)).collect())
        .collect();
    (listed, popular_idx, cat_idx)
}

#[allow(clippy::too_many_arguments)]
fn head(
    src: &dyn Source,
    categories: Vec<String>,
    map: &[u32],
    base: String,
    base_shards: u32,
    patch: Vec<u64>,
    index: BaseIndex,
    mut stats: ReleaseStats,
) -> Release {
    let (listed, popular, category_top) = lists(src, categories.len(), map);
    let max_popularity = popular
        .first()
        .map_or(0.0, |&i| listed[i as usize].popularity);
    stats.items = src.len() as u64;
    stats.patch_shards = patch.len() as u32;
    let doc = HeadDoc {
        version: src.version().to_string(),
        categories,
        items: src.len() as u64,
        max_popularity,
        listed,
        popular,
        category_top,
        base,
        base_shards,
        patch: serde_bytes::ByteBuf::from(
            patch
                .iter()
                .flat_map(|h| h.to_be_bytes())
                .collect::<Vec<u8>>(),
        ),
    };
    let bytes = encode(&doc);
    stats.head_bytes = bytes.len() as u64;
    Release {
        head_hash: content_hash(&bytes),
        head: bytes,
        index,
        stats,
    }
}

/// A whole catalog as a head and every shard in memory: the form tools, tests and the
/// conformance corpus decide with (the same sharded path as the edge, all shards present).
pub fn in_memory(catalog: &Catalog) -> Result<(super::Head, super::ShardMap), ModelError> {
    let mut keys = Vec::new();
    let rel = build(catalog, None, &mut |w, b| keys.push((w.key, b)))?;
    let head = super::Head::decode(&rel.head)?;
    let mut map = super::ShardMap::default();
    for (i, (_, bytes)) in keys.into_iter().enumerate() {
        map.0
            .insert(ShardRef::Base(i as u32), super::Shard::decode(&bytes)?);
    }
    Ok((head, map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CatalogDoc, ItemDoc};
    use crate::model::{find, Found, Head, NoShards, Shard, ShardMap};

    fn doc(n: usize, version: &str) -> CatalogDoc {
        CatalogDoc {
            version: version.into(),
            items: (0..n)
                .map(|i| ItemDoc {
                    id: format!("i{i:04}"),
                    feedback: Vec::new(),
                    category: Some(format!("c{}", i % 7)),
                    price: Some(i as f64 + 0.5),
                    available: i % 11 != 0,
                    tags: vec![],
                    title: Some(format!("Item number {i} with a title of some length")),
                    popularity: (i % 97) as f32,
                    related: (1..=20)
                        .map(|k| (format!("i{:04}", (i * 7 + k * 13) % n), 1.0 / k as f32))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Builds a release; returns it with every shard it wrote, by key.
    fn release(
        d: &CatalogDoc,
        prev: Option<&Previous>,
    ) -> (Release, std::collections::HashMap<String, Vec<u8>>) {
        let cat = Catalog::from_doc(d).unwrap();
        let mut written = std::collections::HashMap::new();
        let r = build(&cat, prev, &mut |w, b| {
            written.insert(w.key, b);
        })
        .unwrap();
        (r, written)
    }

    fn load(head: &Head, kv: &std::collections::HashMap<String, Vec<u8>>) -> ShardMap {
        ShardMap::load(head, |k| kv.get(k).map(|b| crate::model::to_stored(b))).unwrap()
    }

    #[test]
    fn full_release_holds_every_item_within_the_size_limits() {
        let d = doc(3000, "v1");
        let (r, kv) = release(&d, None);
        let head = Head::decode(&r.head).unwrap();
        assert_eq!(head.items, 3000);
        assert_eq!(kv.len() as u32, head.base_shards);
        assert!(head.base_shards > 1, "{}", head.base_shards);
        assert!(kv.values().all(|b| stored_len(b.len()) <= SHARD_MAX_BYTES));
        let shards = load(&head, &kv);
        let recs = shards.records(&head);
        assert_eq!(recs.len(), 3000);
        assert_eq!(recs["i0005"].related.len(), 20);
        // A related item carries what filters and answers need.
        let rel = &recs["i0005"].related[0];
        assert!(rel.card.title().is_some() && rel.card.price().is_some());
        assert!(matches!(find(&head, &shards, "nope"), Found::Absent));
        for at in [ShardRef::Base(0), ShardRef::Base(head.base_shards - 1)] {
            assert_eq!(head.shard_of_key(&head.key(at).unwrap()), Some(at));
        }
        assert_eq!(
            head.shard_of_key(&format!("shard:{}:{}", head.base, head.base_shards)),
            None
        );
        assert_eq!(head.shard_of_key("shard:0000000000000000:1"), None);
        assert_eq!(head.shard_of_key("patch:0000000000000000"), None);
        assert!(matches!(find(&head, &NoShards, "i0005"), Found::Missing));
        // Deterministic: the same catalog, the same head and base.
        let (again, _) = release(&d, None);
        assert_eq!(again.head_hash, r.head_hash);
    }

    #[test]
    fn a_small_change_writes_only_patch_shards_and_reads_back_the_same_as_a_full_build() {
        let d1 = doc(3000, "v1");
        let (r1, mut kv) = release(&d1, None);
        let prev = Previous {
            head: Head::decode(&r1.head).unwrap(),
            index: r1.index.clone(),
        };
        let mut d2 = d1.clone();
        d2.version = "v2".into();
        for i in (0..3000).step_by(100) {
            d2.items[i].related.iter_mut().for_each(|r| r.1 *= 0.5);
            d2.items[i].popularity += 1.0;
        }
        d2.items.remove(7); // a removed item: tombstoned, and gone from related lists
        for it in &mut d2.items {
            it.related.retain(|r| r.0 != "i0007");
        }
        d2.items.push(ItemDoc {
            id: "new-item".into(),
            feedback: Vec::new(),
            category: Some("c-new".into()),
            price: None,
            available: true,
            tags: vec![],
            title: None,
            popularity: 1000.0,
            related: vec![("i0001".into(), 1.0)],
        });
        let (r2, written) = release(&d2, Some(&prev));
        assert!(!r2.stats.full);
        assert!(written.keys().all(|k| k.starts_with("patch:")));
        assert!(
            r2.stats.shards_written * 20 <= u64::from(prev.head.base_shards),
            "{:?}",
            r2.stats
        );
        kv.extend(written);
        let head2 = Head::decode(&r2.head).unwrap();
        assert_eq!(head2.base, prev.head.base);
        let patched = load(&head2, &kv).records(&head2);
        let (full, fkv) = release(&d2, None);
        let full_head = Head::decode(&full.head).unwrap();
        let fresh = load(&full_head, &fkv).records(&full_head);
        assert_eq!(patched.len(), fresh.len());
        assert!(!patched.contains_key("i0007"));
        // Same records, up to category numbering (the patch keeps the base's).
        for (id, rec) in &fresh {
            let p = &patched[id];
            assert_eq!(p.related.len(), rec.related.len(), "{id}");
            let name = |h: &Head, c: &Card| {
                c.category()
                    .and_then(|k| h.category_name(k))
                    .map(String::from)
            };
            assert_eq!(name(&head2, &p.card), name(&full_head, &rec.card), "{id}");
            assert_eq!(p.popularity, rec.popularity, "{id}");
        }
        assert_eq!(head2.listed[head2.popular[0] as usize].card.id, "new-item");
        // Publishing the same catalog again writes nothing but the head.
        let prev2 = Previous {
            head: head2,
            index: r2.index.clone(),
        };
        let (r3, w3) = release(&d2, Some(&prev2));
        assert!(w3.is_empty(), "{:?}", w3.keys().collect::<Vec<_>>());
        assert_eq!(r3.stats.shards_written, 0);
    }

    #[test]
    fn a_patch_that_outgrows_its_room_becomes_a_full_release() {
        let d1 = doc(2000, "v1");
        let (r1, _) = release(&d1, None);
        let prev = Previous {
            head: Head::decode(&r1.head).unwrap(),
            index: r1.index.clone(),
        };
        let mut d2 = d1.clone();
        d2.items
            .iter_mut()
            .for_each(|i| i.related.iter_mut().for_each(|r| r.1 *= 0.5));
        let (r2, _) = release(&d2, Some(&prev));
        assert!(r2.stats.full, "{:?}", r2.stats);
    }

    #[test]
    fn shards_and_heads_refuse_bad_bytes() {
        assert!(Head::decode(&[]).is_err());
        assert!(matches!(
            Head::decode(&[9, 1, 2]),
            Err(ModelError::UnsupportedFormat { found: 9 })
        ));
        let (r, kv) = release(&doc(50, "v"), None);
        assert!(Head::decode(&r.head[..r.head.len() / 2]).is_err());
        let b = kv.values().next().unwrap();
        assert!(Shard::decode(&b[..b.len() - 3]).is_err());
        assert!(Shard::decode_stored("not base64!").is_err());
        assert!(BaseIndex::from_bytes(&[0; 15]).is_err());
        assert!(crate::model::is_shard_key("shard:0123456789abcdef:12"));
        assert!(crate::model::is_shard_key("patch:0123456789abcdef"));
        for bad in [
            "config:current",
            "shard:xyz:1",
            "shard:0123456789abcdef:",
            "shard:0123456789abcdef:+1",
            "shard:0123456789abcdef:-1",
            "patch:0123",
        ] {
            assert!(!crate::model::is_shard_key(bad), "{bad}");
        }
    }

    #[test]
    fn item_placement_hash_is_the_published_one() {
        // FNV-1a-64 then the SplitMix64 finaliser, computed independently (Python): shards
        // already in KV are found by these values, so they must never change.
        assert_eq!(crate::model::item_hash(""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(crate::model::item_hash("a"), 0x02c0_bdbf_4814_20f8);
        assert_eq!(crate::model::item_hash("sku-0005"), 0xf2ee_cd3f_7c50_4fa0);
        assert_eq!(crate::model::item_hash("é"), 0x2334_0361_7480_019e);
    }

    #[test]
    fn shards_find_their_records_charge_their_memory_and_refuse_repeated_ids() {
        let (_, kv) = release(&doc(300, "v1"), None);
        // Shards are filled towards their target (16 KiB), under the 64 KiB limit.
        let largest = kv.values().map(|b| stored_len(b.len())).max().unwrap();
        assert!(
            largest > SHARD_TARGET_BYTES / 2 && largest <= 64 * 1024,
            "{largest}"
        );
        let bytes = kv.values().find(|b| b.len() > 1000).expect("a shard");
        let shard = Shard::decode(bytes).unwrap();
        let first = shard.records[0].card.id.to_string();
        assert_eq!(
            shard.record(&first).map(|r| r.card.id.to_string()),
            Some(first.clone())
        );
        assert!(shard.record("not-an-item").is_none());
        // The LRU charges a decoded shard about what it holds: three times its stored bytes
        // plus ~160 bytes a record (the decoded strings and vectors).
        let (n, b) = (shard.records().len(), bytes.len());
        assert!(n > 1);
        let heap = shard.heap_bytes();
        assert!(
            heap >= 3 * b + 100 * n && heap <= 4 * b + 200 * n,
            "{heap} for {b} bytes, {n} records"
        );
        let twice = crate::model::encode(&ShardDoc {
            records: vec![shard.records[0].clone(), shard.records[0].clone()],
            gone: vec![],
        });
        let Err(e) = Shard::decode(&twice) else {
            panic!("a repeated id must be refused")
        };
        assert!(e.to_string().contains("records"), "{e}");
    }

    #[test]
    fn an_empty_catalog_publishes_a_head_that_loads() {
        let (r, kv) = release(&doc(0, "empty"), None);
        let head = Head::decode(&r.head).unwrap();
        assert_eq!((head.items, kv.len()), (0, 0));
    }

    #[test]
    fn every_item_reads_back_as_authored_and_the_index_round_trips() {
        let mut d = doc(500, "v7");
        // Every third item has exposure feedback on its first related item.
        for it in d.items.iter_mut().step_by(3) {
            it.feedback = vec![(it.related[0].0.clone(), 0.5)];
        }
        let cat = Catalog::from_doc(&d).unwrap();
        let (r, kv) = release(&d, None);
        let head = Head::decode(&r.head).unwrap();
        assert_eq!(head.version, "v7");
        let recs = load(&head, &kv).records(&head);
        assert_eq!(recs.len(), 500);
        for (i, it) in d.items.iter().enumerate() {
            let rec = &recs[it.id.as_str()];
            let card = &rec.card;
            assert_eq!(card.id, it.id);
            let category = card.category().and_then(|c| head.category_name(c));
            assert_eq!(category, it.category.as_deref(), "{}", it.id);
            assert_eq!(card.price(), it.price, "{}", it.id);
            assert_eq!(card.available, it.available);
            assert_eq!(card.title().map(|t| t.to_string()), it.title);
            assert_eq!(rec.popularity, it.popularity);
            let related: Vec<(&str, f32, f32)> = rec
                .related
                .iter()
                .map(|x| (x.card.id.as_str(), x.score, x.feedback))
                .collect();
            let want: Vec<(&str, f32, f32)> = cat.related[i]
                .iter()
                .map(|&(j, s)| {
                    let f = if i % 3 == 0 && j == cat.related[i][0].0 {
                        0.5
                    } else {
                        1.0
                    };
                    (d.items[j as usize].id.as_str(), s, f)
                })
                .collect();
            assert_eq!(related, want, "{}", it.id);
        }
        let bytes = r.index.to_bytes();
        assert_eq!(bytes.len(), 500 * 16);
        assert_eq!(BaseIndex::from_bytes(&bytes).unwrap(), r.index);
        assert!(BaseIndex::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut unsorted = bytes[16..32].to_vec();
        unsorted.extend_from_slice(&bytes[..16]);
        assert!(BaseIndex::from_bytes(&unsorted).is_err());
        assert!(BaseIndex::default().is_empty() && !r.index.is_empty());
        // Two items sharing a hash: neither is trusted (treated as changed).
        let i = BaseIndex(vec![(1, 10), (2, 20), (2, 21), (3, 30)]);
        let got: Vec<Option<u64>> = (1..=4).map(|h| i.get(h)).collect();
        assert_eq!(got, [Some(10), None, Some(30), None]);
    }

    fn titled(n: usize, title_len: usize) -> CatalogDoc {
        let mut d = doc(n, "big");
        for it in &mut d.items {
            it.title = Some("t".repeat(title_len));
            it.related.clear();
        }
        d
    }

    #[test]
    fn a_record_is_refused_exactly_when_its_shard_would_pass_64_kib() {
        let mut outcomes = std::collections::BTreeSet::new();
        for len in 49_100..49_160 {
            let cat = Catalog::from_doc(&titled(1, len)).unwrap();
            let (_, map) = categories(&cat, None);
            let bytes = rmp_serde::to_vec(&record(&cat, 0, &map)).unwrap();
            let fits = stored_len(bytes.len() + SHARD_OVERHEAD) <= SHARD_MAX_BYTES;
            let got = scan(&cat, &map);
            assert_eq!(got.is_ok(), fits, "title {len}: {} bytes", bytes.len());
            if let Err(e) = got {
                assert!(e.to_string().contains("items[0]"), "{e}");
            }
            outcomes.insert((
                fits,
                stored_len(bytes.len() + SHARD_OVERHEAD) == SHARD_MAX_BYTES,
            ));
        }
        assert!(
            outcomes.contains(&(true, true)),
            "the exact limit is accepted: {outcomes:?}"
        );
        assert!(outcomes.contains(&(false, false)));
    }

    #[test]
    fn an_uneven_spread_grows_the_shard_count_by_quarters_to_the_first_that_fits() {
        // Ten records of ~40 KiB stored: any two in one shard overflow it.
        let d = titled(10, 30_000);
        let cat = Catalog::from_doc(&d).unwrap();
        let (_, map) = categories(&cat, None);
        let s = scan(&cat, &map).unwrap();
        let fits = |shards: u32| {
            let mut sum = vec![SHARD_OVERHEAD; shards as usize];
            for (h, &b) in s.hashes.iter().zip(&s.sizes) {
                sum[(h % u64::from(shards)) as usize] += b as usize;
            }
            sum.iter().all(|&b| stored_len(b) <= SHARD_MAX_BYTES)
        };
        let total: usize = s.sizes.iter().map(|&b| b as usize).sum();
        let mut want = (stored_len(total) / SHARD_TARGET_BYTES).max(1) as u32;
        assert!(
            !fits(want),
            "the size-based count must not fit for this test"
        );
        while !fits(want) {
            want += want / 4 + 1;
        }
        let (r, kv) = release(&d, None);
        let head = Head::decode(&r.head).unwrap();
        assert_eq!(head.base_shards, want);
        assert!(kv.values().all(|b| stored_len(b.len()) <= SHARD_MAX_BYTES));
    }

    #[test]
    fn heads_refuse_inconsistent_fields_and_name_their_own_shard_keys_only() {
        let (r, _) = release(&doc(50, "v"), None);
        let body = &r.head[1..];
        let tweak = |f: &dyn Fn(&mut HeadDoc)| {
            let mut d: HeadDoc = rmp_serde::from_slice(body).unwrap();
            f(&mut d);
            Head::decode(&crate::model::encode(&d))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(tweak(&|_| {}), None);
        let e = tweak(&|d| d.base_shards = 0).expect("items without shards");
        assert!(e.contains("base_shards"), "{e}");
        let e = tweak(&|d| d.category_top.push(vec![])).expect("a list past the categories");
        assert!(e.contains("category_top"), "{e}");
        let head = Head::decode(&r.head).unwrap();
        let last = ShardRef::Base(head.base_shards - 1);
        assert!(head.key(last).is_some());
        assert_eq!(head.key(ShardRef::Base(head.base_shards)), None);
        // A patch release: its patch keys are its own; others' and the empty one are not.
        let d1 = doc(300, "v1");
        let (r1, _) = release(&d1, None);
        let prev = Previous {
            head: Head::decode(&r1.head).unwrap(),
            index: r1.index.clone(),
        };
        let mut d2 = d1.clone();
        d2.items[3].popularity += 1.0;
        let (r2, written) = release(&d2, Some(&prev));
        let h2 = Head::decode(&r2.head).unwrap();
        let key = written.keys().find(|k| k.starts_with("patch:")).unwrap();
        let at = h2.shard_of_key(key).expect("its own patch shard");
        assert_eq!(h2.key(at).as_deref(), Some(key.as_str()));
        assert_eq!(h2.shard_of_key("patch:0000000000000000"), None);
        assert_eq!(h2.shard_of_key("patch:0123456789abcdef"), None);
    }

    #[test]
    fn release_stats_count_what_was_written_and_a_patch_keeps_categories_by_name() {
        let d1 = doc(300, "v1");
        let (r1, kv1) = release(&d1, None);
        let h1 = Head::decode(&r1.head).unwrap();
        let sizes: Vec<u64> = kv1.values().map(|b| stored_len(b.len()) as u64).collect();
        assert_eq!(r1.index.len(), 300);
        assert_eq!(
            (
                r1.stats.base_shards,
                r1.stats.shards_written,
                r1.stats.bytes_written
            ),
            (h1.base_shards, kv1.len() as u64, sizes.iter().sum::<u64>())
        );
        assert_eq!(r1.stats.max_shard_bytes, *sizes.iter().max().unwrap());
        // A patch: item 0 moves to a category the release has never seen, so the catalog's
        // category order (new one first) differs from the release's (new one last).
        let prev = Previous {
            head: h1.clone(),
            index: r1.index.clone(),
        };
        let mut d2 = d1.clone();
        d2.items[0].category = Some("a-new-category".into());
        d2.items[1].popularity += 1.0;
        let (r2, kv2) = release(&d2, Some(&prev));
        assert!(!r2.stats.full);
        assert_eq!(r2.stats.base_shards, h1.base_shards);
        // The two items, and those whose related lists carry item 0's card.
        assert!(
            r2.stats.patched >= 2 && r2.stats.patched < 300,
            "{}",
            r2.stats.patched
        );
        let patch_bytes: u64 = kv2.values().map(|b| stored_len(b.len()) as u64).sum();
        assert_eq!(
            (r2.stats.shards_written, r2.stats.bytes_written),
            (kv2.len() as u64, patch_bytes)
        );
        let h2 = Head::decode(&r2.head).unwrap();
        let mut kv = kv1.clone();
        kv.extend(kv2);
        let recs = load(&h2, &kv).records(&h2);
        for it in &d2.items {
            let card = &recs[it.id.as_str()].card;
            let name = card.category().and_then(|c| h2.category_name(c));
            assert_eq!(name, it.category.as_deref(), "{}", it.id);
        }
    }

    #[test]
    fn a_previous_release_without_shards_never_seeds_a_patch() {
        // An empty catalog's head (no shards) beside another release's index, as a damaged
        // output folder could hold: the build must not place items into zero shards.
        let (empty, _) = release(&doc(0, "e"), None);
        let (full, _) = release(&doc(50, "v"), None);
        let prev = Previous {
            head: Head::decode(&empty.head).unwrap(),
            index: full.index.clone(),
        };
        let (r, _) = release(&doc(50, "v2"), Some(&prev));
        assert!(r.stats.full);
    }
}
