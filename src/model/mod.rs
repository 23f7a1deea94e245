//! The published model, read piecewise: a small *head* and content-addressed *item shards*.
//!
//! A decision needs the candidate lists (global popular, per-category top) and, for each item
//! the session touched, that item's record: its attributes and its related list, each related
//! item carrying the attributes the filters and the answer need (category, availability, title,
//! price), so one read of the anchors' shards is enough.
//!
//! Layout in the CONFIG KV namespace (everything immutable except the pointer):
//!
//! | key | value |
//! | --- | --- |
//! | `model:<hash>` | the [`Head`]: categories, the candidate lists with their items' cards, item count, the base layer's id and shard count, the patch layer's shard hashes |
//! | `shard:<base>:<i>` | base shard `i`: every item with `item_hash(id) % base_shards == i` |
//! | `patch:<hash>` | patch shard: records changed since the base was built (`item_hash(id) % patch_shards`), and tombstones |
//!
//! A publish that changes a few items writes only the patch shards whose bytes changed, then
//! the head, then the pointer; when the patch layer outgrows its room the next publish builds a
//! new base (see [`build`]). Shards are MessagePack stored as base64 text: KV's bulk read, the
//! one round a cold decision makes, returns text only.

pub mod build;
#[cfg(feature = "kits")]
pub mod synthetic;

use crate::error::FieldError;
use crate::experiment::fnv1a64;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Format byte leading every head and shard.
pub const FORMAT: u8 = 2;
/// Largest stored shard (base64 text), bytes.
pub const SHARD_MAX_BYTES: usize = 64 * 1024;
/// Stored size a base shard is aimed at, bytes: a cold decision reads one shard per anchor
/// (about ten), so smaller shards mean fewer bytes per decision; larger ones, fewer keys.
pub const SHARD_TARGET_BYTES: usize = 16 * 1024;
/// Base shards per patch shard: a publish that rewrites every patch shard writes 1/64 of the
/// base's key count.
pub const PATCH_RATIO: u32 = 64;
/// Items of the global popularity list a decision draws from (the head keeps exactly these).
pub const POPULAR_LEN: usize = 50;
/// Items of each category's top list a decision draws from.
pub const CATEGORY_TOP_LEN: usize = 20;
/// Most shards one decision plans: well inside one KV bulk read (100 keys), and a bound on
/// what one request can make an isolate read and decode (~1 MB), whatever a client sends.
pub const MAX_PLANNED_SHARDS: usize = 48;

/// Why a head or shard could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Not parseable.
    #[error("model data does not parse: {0}")]
    Parse(String),
    /// Written by another format version.
    #[error("model format {found} is not supported (this build reads {FORMAT})")]
    UnsupportedFormat {
        /// Found format byte.
        found: u8,
    },
    /// Parsed but inconsistent.
    #[error("invalid model: {}", crate::error::join(.0))]
    Invalid(Vec<FieldError>),
}

/// What a decision needs to show and filter an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// Item id.
    pub id: String,
    /// Category index + 1 into the head's categories (0 = none).
    pub category: u32,
    /// In stock / published.
    pub available: bool,
    /// Price in cents + 1 (0 = none).
    pub price: u64,
    /// Display title ("" = none); shared, so an answer copies a pointer, not the text.
    pub title: std::sync::Arc<str>,
    /// [`item_hash`] of the id, filled in when loaded (not stored).
    #[serde(skip)]
    pub key: u64,
}

impl Card {
    /// Category index into the head's categories.
    pub fn category(&self) -> Option<u32> {
        self.category.checked_sub(1)
    }

    /// Price.
    pub fn price(&self) -> Option<f64> {
        self.price.checked_sub(1).map(|c| c as f64 / 100.0)
    }

    /// Title.
    pub fn title(&self) -> Option<&std::sync::Arc<str>> {
        Some(&self.title).filter(|t| !t.is_empty())
    }

    fn fill_key(&mut self) {
        self.key = item_hash(&self.id);
    }
}

/// An item of a candidate list, with the popularity its score is drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// The item.
    pub card: Card,
    /// Popularity.
    pub popularity: f32,
}

/// One related item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    /// The related item.
    pub card: Card,
    /// Relatedness in (0, 1].
    pub score: f32,
    /// Exposure feedback: a factor on `score` for decisions that use it (1 = none). Stored
    /// last with a default, so shards written before it read as 1.
    #[serde(default = "no_feedback", skip_serializing_if = "is_no_feedback")]
    pub feedback: f32,
}

fn no_feedback() -> f32 {
    1.0
}

fn is_no_feedback(f: &f32) -> bool {
    *f == 1.0
}

/// One item as a shard holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The item.
    pub card: Card,
    /// Popularity.
    pub popularity: f32,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Related items, best first (score desc, then id asc).
    pub related: Vec<Related>,
}

/// Which shard: of the base layer or of the patch layer, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShardRef {
    /// Base shard `i`.
    Base(u32),
    /// Patch shard `i`.
    Patch(u32),
}

#[derive(Serialize, Deserialize)]
struct ShardDoc {
    /// Sorted by id.
    records: Vec<Record>,
    /// Item hashes of removed items (patch shards only), sorted.
    gone: Vec<u64>,
}

/// A loaded shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    records: Vec<Record>,
    /// The records' item hashes, in record order: a lookup scans these, not strings.
    keys: Vec<u64>,
    gone: Vec<u64>,
    heap: usize,
}

impl Shard {
    /// Decodes stored bytes (format byte + MessagePack).
    pub fn decode(bytes: &[u8]) -> Result<Shard, ModelError> {
        let body = check_format(bytes)?;
        let doc: ShardDoc =
            rmp_serde::from_slice(body).map_err(|e| ModelError::Parse(e.to_string()))?;
        if !doc.records.windows(2).all(|w| w[0].card.id < w[1].card.id) {
            return Err(invalid("records", "must be sorted by id, without repeats"));
        }
        let mut doc = doc;
        for r in &mut doc.records {
            r.card.fill_key();
            r.related.iter_mut().for_each(|x| x.card.fill_key());
        }
        // Roughly what the decoded form holds on the heap: the LRU's unit of account.
        let heap = bytes.len() * 3 + doc.records.len() * 160;
        Ok(Shard {
            keys: doc.records.iter().map(|r| r.card.key).collect(),
            records: doc.records,
            gone: doc.gone,
            heap,
        })
    }

    /// Decodes a stored value as KV holds it (base64 text).
    pub fn decode_stored(text: &str) -> Result<Shard, ModelError> {
        Shard::decode(&from_stored(text)?)
    }

    /// The record of an item, if this shard holds it.
    pub fn record(&self, id: &str) -> Option<&Record> {
        self.record_at(item_hash(id), id)
    }

    /// The record of an item whose [`item_hash`] is `hash`.
    fn record_at(&self, hash: u64, id: &str) -> Option<&Record> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, &k)| k == hash)
            .map(|(i, _)| &self.records[i])
            .find(|r| r.card.id == id)
    }

    /// Records, sorted by id.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether the item with this hash was removed (patch shards).
    pub fn removed(&self, hash: u64) -> bool {
        self.gone.binary_search(&hash).is_ok()
    }

    /// Approximate memory the loaded shard holds, bytes.
    pub fn heap_bytes(&self) -> usize {
        self.heap
    }
}

#[derive(Serialize, Deserialize)]
struct HeadDoc {
    version: String,
    categories: Vec<String>,
    items: u64,
    max_popularity: f32,
    listed: Vec<Listed>,
    popular: Vec<u32>,
    category_top: Vec<Vec<u32>>,
    base: String,
    base_shards: u32,
    /// 8 bytes (big endian) per patch shard: its content hash; 0 = empty.
    patch: serde_bytes::ByteBuf,
}

/// A loaded head: everything a decision needs besides the anchors' shards.
#[derive(Debug, Clone)]
pub struct Head {
    /// Catalog version label (as authored).
    pub version: String,
    /// Content hash of the head (its KV key is `model:<hash>`).
    pub hash: String,
    /// Category names.
    pub categories: Vec<String>,
    /// The same names, shared (answers name an item's category without copying it).
    pub category_names: Vec<std::sync::Arc<str>>,
    /// `category:<name>` per category: the "why" an answer lists, shared, not rebuilt.
    pub category_whys: Vec<std::sync::Arc<str>>,
    /// Items in the catalog.
    pub items: u64,
    /// Highest popularity of an available item, for normalising.
    pub max_popularity: f32,
    /// Items the candidate lists name.
    pub listed: Vec<Listed>,
    /// Most popular available items (indices into `listed`), best first.
    pub popular: Vec<u32>,
    /// Per category, its most popular available items (indices into `listed`).
    pub category_top: Vec<Vec<u32>>,
    /// Base layer id (content hash of its shards).
    pub base: String,
    /// Base shard count.
    pub base_shards: u32,
    /// Patch shard content hashes (0 = empty).
    pub patch: Vec<u64>,
    category_index: FxHashMap<String, u32>,
}

/// Where an item lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The item's hash ([`item_hash`]).
    pub hash: u64,
    /// Its base shard.
    pub base: ShardRef,
    /// Its patch shard, when that shard is not empty.
    pub patch: Option<ShardRef>,
}

impl Head {
    /// Decodes stored head bytes.
    pub fn decode(bytes: &[u8]) -> Result<Head, ModelError> {
        let body = check_format(bytes)?;
        let mut d: HeadDoc =
            rmp_serde::from_slice(body).map_err(|e| ModelError::Parse(e.to_string()))?;
        d.listed.iter_mut().for_each(|l| l.card.fill_key());
        let mut errs = Vec::new();
        if d.items > 0 && d.base_shards == 0 {
            errs.push(FieldError::new("base_shards", "must be > 0"));
        }
        if d.patch.len() % 8 != 0 {
            errs.push(FieldError::new("patch", "must be 8 bytes per shard"));
        }
        if d.category_top.len() > d.categories.len() {
            errs.push(FieldError::new("category_top", "longer than categories"));
        }
        let n = d.listed.len() as u32;
        let lists = d.popular.iter().chain(d.category_top.iter().flatten());
        if lists.clone().any(|&i| i >= n) {
            errs.push(FieldError::new("popular", "names an item not listed"));
        }
        let ncat = d.categories.len() as u32;
        if d.listed.iter().any(|l| l.card.category > ncat) {
            errs.push(FieldError::new("listed", "names an unknown category"));
        }
        if !errs.is_empty() {
            return Err(ModelError::Invalid(errs));
        }
        let category_index = d
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect();
        Ok(Head {
            version: d.version,
            hash: content_hash(bytes),
            category_names: d.categories.iter().map(|c| c.as_str().into()).collect(),
            category_whys: d
                .categories
                .iter()
                .map(|c| format!("category:{c}").into())
                .collect(),
            categories: d.categories,
            items: d.items,
            max_popularity: d.max_popularity,
            listed: d.listed,
            popular: d.popular,
            category_top: d.category_top,
            base: d.base,
            base_shards: d.base_shards,
            patch: d
                .patch
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            category_index,
        })
    }

    /// The category index for a name.
    pub fn category_of_name(&self, name: &str) -> Option<u32> {
        self.category_index.get(name).copied()
    }

    /// A category's name.
    pub fn category_name(&self, c: u32) -> Option<&str> {
        self.categories.get(c as usize).map(String::as_str)
    }

    /// Where an item lives (`None` for an empty catalog).
    pub fn place(&self, id: &str) -> Option<Place> {
        if self.base_shards == 0 {
            return None;
        }
        let hash = item_hash(id);
        let patch = (!self.patch.is_empty())
            .then(|| (hash % self.patch.len() as u64) as u32)
            .filter(|&p| self.patch[p as usize] != 0)
            .map(ShardRef::Patch);
        Some(Place {
            hash,
            base: ShardRef::Base((hash % u64::from(self.base_shards)) as u32),
            patch,
        })
    }

    /// The KV key of a shard (`None` for an empty patch shard, which is never stored).
    pub fn key(&self, at: ShardRef) -> Option<String> {
        match at {
            ShardRef::Base(i) => (i < self.base_shards).then(|| base_key(&self.base, i)),
            ShardRef::Patch(i) => match self.patch.get(i as usize) {
                Some(&h) if h != 0 => Some(patch_key(h)),
                _ => None,
            },
        }
    }

    /// Which shard of this head a KV key names, if any.
    pub fn shard_of_key(&self, key: &str) -> Option<ShardRef> {
        match parse_key(key)? {
            ParsedKey::Base(base, i) => {
                (base == self.base && i < self.base_shards).then_some(ShardRef::Base(i))
            }
            ParsedKey::Patch(hash) => {
                let at = self.patch.iter().position(|&h| h == hash && h != 0)?;
                Some(ShardRef::Patch(at as u32))
            }
        }
    }

    /// The shards holding these items, each once, in first-named order, at most
    /// [`MAX_PLANNED_SHARDS`].
    pub fn shards_for<'i>(&self, ids: impl IntoIterator<Item = &'i str>) -> Vec<ShardRef> {
        let mut out: Vec<ShardRef> = Vec::new();
        for id in ids {
            let Some(p) = self.place(id) else { break };
            for r in p.patch.into_iter().chain([p.base]) {
                if out.len() < MAX_PLANNED_SHARDS && !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }
}

/// The KV key of the head with this content hash.
pub fn head_key(hash: &str) -> String {
    format!("model:{hash}")
}

/// Whether a string has the shape of a shard key (`shard:<16 hex>:<n>` or `patch:<16 hex>`).
pub fn is_shard_key(key: &str) -> bool {
    parse_key(key).is_some()
}

/// A shard key taken apart.
enum ParsedKey<'a> {
    /// `shard:<base>:<i>`.
    Base(&'a str, u32),
    /// `patch:<hash>`.
    Patch(u64),
}

/// The one reader of shard keys ([`base_key`] and [`patch_key`] write them).
fn parse_key(key: &str) -> Option<ParsedKey<'_>> {
    let hex16 = |h: &str| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = key.strip_prefix("shard:") {
        let (base, i) = rest.split_once(':')?;
        let digits = !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit());
        return (hex16(base) && digits)
            .then(|| i.parse().ok())
            .flatten()
            .map(|i| ParsedKey::Base(base, i));
    }
    let hash = key.strip_prefix("patch:").filter(|h| hex16(h))?;
    u64::from_str_radix(hash, 16).ok().map(ParsedKey::Patch)
}

fn base_key(base: &str, i: u32) -> String {
    format!("shard:{base}:{i}")
}

fn patch_key(hash: u64) -> String {
    format!("patch:{hash:016x}")
}

/// Shards a decision may read: a host's cache, or every shard of a model held in memory.
pub trait ShardSource {
    /// The shard, if loaded.
    fn shard(&self, at: ShardRef) -> Option<&Shard>;
}

/// Shards held in a map (tools, tests, the browser's loaded set).
#[derive(Debug, Clone, Default)]
pub struct ShardMap(pub FxHashMap<ShardRef, Shard>);

impl ShardSource for ShardMap {
    fn shard(&self, at: ShardRef) -> Option<&Shard> {
        self.0.get(&at)
    }
}

impl ShardMap {
    /// Every item's current record (patch over base, removed items left out), by id: what a
    /// release holds, for comparing releases.
    pub fn records(&self, head: &Head) -> std::collections::BTreeMap<String, Record> {
        let mut out = std::collections::BTreeMap::new();
        for i in 0..head.base_shards {
            for r in self
                .0
                .get(&ShardRef::Base(i))
                .map_or(&[][..], |s| &s.records)
            {
                if let Found::Item(cur) = find(head, self, &r.card.id) {
                    out.insert(cur.card.id.clone(), cur.clone());
                }
            }
        }
        for i in 0..head.patch.len() as u32 {
            for r in self
                .0
                .get(&ShardRef::Patch(i))
                .map_or(&[][..], |s| &s.records)
            {
                out.insert(r.card.id.clone(), r.clone());
            }
        }
        out
    }

    /// Loads every shard a head names from stored values found by key (`None` when one is
    /// missing or does not decode).
    pub fn load(head: &Head, stored: impl Fn(&str) -> Option<String>) -> Option<ShardMap> {
        let mut map = ShardMap::default();
        let refs = (0..head.base_shards)
            .map(ShardRef::Base)
            .chain((0..head.patch.len() as u32).map(ShardRef::Patch));
        for at in refs {
            let Some(key) = head.key(at) else { continue };
            let shard = Shard::decode_stored(&stored(&key)?).ok()?;
            map.0.insert(at, shard);
        }
        Some(map)
    }
}

/// No shards at all (the head alone: candidate lists only).
pub struct NoShards;

impl ShardSource for NoShards {
    fn shard(&self, _: ShardRef) -> Option<&Shard> {
        None
    }
}

/// What a lookup of an item found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found<'s> {
    /// The item's record.
    Item(&'s Record),
    /// Not in the catalog.
    Absent,
    /// Its shard is not loaded: unknown.
    Missing,
}

/// Looks an item up: its patch shard first (a changed or removed item), then its base shard.
pub fn find<'s>(head: &Head, shards: &'s dyn ShardSource, id: &str) -> Found<'s> {
    let Some(p) = head.place(id) else {
        return Found::Absent;
    };
    if let Some(at) = p.patch {
        let Some(s) = shards.shard(at) else {
            return Found::Missing;
        };
        if let Some(r) = s.record_at(p.hash, id) {
            return Found::Item(r);
        }
        if s.removed(p.hash) {
            return Found::Absent;
        }
    }
    match shards.shard(p.base) {
        None => Found::Missing,
        Some(s) => s.record_at(p.hash, id).map_or(Found::Absent, Found::Item),
    }
}

/// The stable hash placing an item: FNV-1a-64 of its id's UTF-8 bytes, then the SplitMix64
/// finaliser (FNV's low bits alone spread sequential ids poorly across shards).
pub fn item_hash(id: &str) -> u64 {
    let mut z = fnv1a64(&[id.as_bytes()]);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// First 16 hex digits of the SHA-256 of some bytes: content addresses.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// A shard's bytes as KV stores them (URL-safe base64, no padding).
pub fn to_stored(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Back from [`to_stored`].
pub fn from_stored(text: &str) -> Result<Vec<u8>, ModelError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| ModelError::Parse(e.to_string()))
}

/// Stored length of `n` bytes.
pub fn stored_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn check_format(bytes: &[u8]) -> Result<&[u8], ModelError> {
    let (&v, body) = bytes
        .split_first()
        .ok_or_else(|| ModelError::Parse("empty".into()))?;
    if v != FORMAT {
        return Err(ModelError::UnsupportedFormat { found: v });
    }
    Ok(body)
}

fn invalid(field: &str, m: &str) -> ModelError {
    ModelError::Invalid(vec![FieldError::new(field, m)])
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Writing to a Vec cannot fail for these plain types.
    let _ = rmp_serde::encode::write(&mut out, v);
    out
}
