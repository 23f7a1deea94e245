//! Candidate scoring: the scorer holds every candidate once (by item hash), with its score
//! and compact reasons; folds combine several sources of one anchor or category so each list
//! is walked once.

use crate::model::{find, Card, Found, Head, Record, ShardSource};
use crate::rules::eval::RuleHit;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Most rule reasons listed per item (rules come first: they are what authors debug).
pub(super) const MAX_WHY_RULES: usize = 4;
/// Most source reasons listed per item.
pub(super) const MAX_WHY_SOURCES: usize = 2;

/// A reason, kept compact while scoring (no strings until the final top-k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// Index into the rule hits.
    Rule(u16),
    /// Related to the anchor at this index of the decision's anchors.
    Related(u32),
    /// From this category's top list.
    Category(u32),
    /// Globally popular.
    Popular,
    /// The shopper's own recent item, expected back (model self-relation or `weights.recent`).
    Recent,
}

#[derive(Clone, Copy)]
pub(super) struct Cand<'a> {
    pub(super) item: &'a Card,
    pub(super) score: f64,
    pub(super) rules: [u16; MAX_WHY_RULES],
    pub(super) n_rules: u8,
    pub(super) sources: [Why; MAX_WHY_SOURCES],
    pub(super) n_sources: u8,
}

impl<'a> Cand<'a> {
    pub(super) fn new(item: &'a Card) -> Cand<'a> {
        Cand {
            item,
            score: 0.0,
            rules: [0; MAX_WHY_RULES],
            n_rules: 0,
            sources: [Why::Popular; MAX_WHY_SOURCES],
            n_sources: 0,
        }
    }

    pub(super) fn note(&mut self, why: Why) {
        match why {
            Why::Rule(r) => {
                let n = self.n_rules as usize;
                if n < MAX_WHY_RULES && !self.rules[..n].contains(&r) {
                    self.rules[n] = r;
                    self.n_rules += 1;
                }
            }
            w => {
                let n = self.n_sources as usize;
                if n < MAX_WHY_SOURCES && !self.sources[..n].contains(&w) {
                    self.sources[n] = w;
                    self.n_sources += 1;
                }
            }
        }
    }

    /// The item's reasons as shared labels: rule and category labels come from the bundle
    /// and the model, `related:<anchor>` is made once per anchor (`related` caches it).
    pub(super) fn why(
        &self,
        head: &Head,
        anchors: &[Fold<Anchor>],
        hits: &[RuleHit],
        related: &mut Vec<Option<Arc<str>>>,
    ) -> Vec<Arc<str>> {
        let mut why = Vec::with_capacity(usize::from(self.n_rules + self.n_sources));
        for &r in &self.rules[..self.n_rules as usize] {
            if let Some(h) = hits.get(r as usize) {
                why.push(h.why.clone());
            }
        }
        for w in &self.sources[..self.n_sources as usize] {
            why.push(match *w {
                Why::Related(i) => {
                    let i = i as usize;
                    if related.len() <= i {
                        related.resize(i + 1, None);
                    }
                    related[i]
                        .get_or_insert_with(|| {
                            let id = anchors.get(i).map_or("", |a| &a.key.rec.card.id);
                            format!("related:{id}").into()
                        })
                        .clone()
                }
                Why::Category(c) => head
                    .category_whys
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_else(|| label("category:")),
                Why::Recent => label("recent"),
                Why::Popular | Why::Rule(_) => label("popular"),
            });
        }
        why
    }
}

/// A fixed reason, allocated once per thread and shared after.
pub(super) fn label(text: &'static str) -> Arc<str> {
    thread_local! {
        static LABELS: std::cell::RefCell<Vec<(&'static str, Arc<str>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    LABELS.with(|l| {
        let mut l = l.borrow_mut();
        if let Some((_, a)) = l.iter().find(|(t, _)| *t == text) {
            return a.clone();
        }
        let a: Arc<str> = text.into();
        l.push((text, a.clone()));
        a
    })
}

pub(super) struct Scorer<'a> {
    pub(super) head: &'a Head,
    pub(super) shards: &'a dyn ShardSource,
    /// Item hash ([`Card::key`]) → position in `cands`.
    pub(super) slot: FxHashMap<u64, u32>,
    /// Positions of candidates whose hash another candidate already took (rare).
    pub(super) collided: Vec<u32>,
    /// Candidates in insertion order, so nothing depends on hash iteration order.
    pub(super) cands: Vec<Cand<'a>>,
    /// Lookups that found their shard missing.
    pub(super) missing: u32,
}

impl<'a> Scorer<'a> {
    pub(super) fn new(head: &'a Head, shards: &'a dyn ShardSource) -> Scorer<'a> {
        Scorer {
            head,
            shards,
            slot: FxHashMap::with_capacity_and_hasher(512, Default::default()),
            collided: Vec::new(),
            cands: Vec::with_capacity(512),
            missing: 0,
        }
    }

    // ~260 calls a decision from three places: the call itself cost ~12% of the scoring.
    #[inline(always)]
    pub(super) fn add(&mut self, item: &'a Card, score: f64, why: Why) -> &mut Cand<'a> {
        let next = self.cands.len() as u32;
        let mut at = *self.slot.entry(item.key).or_insert(next);
        if at != next && !same(self.cands[at as usize].item, item) {
            at = self.collided(&item.id).unwrap_or_else(|| {
                self.collided.push(next);
                next
            });
        }
        if at == next {
            self.cands.push(Cand::new(item));
        }
        let c = &mut self.cands[at as usize];
        c.score += score;
        c.note(why);
        c
    }

    pub(super) fn collided(&self, id: &str) -> Option<u32> {
        let cands = &self.cands;
        self.collided
            .iter()
            .copied()
            .find(|&i| cands[i as usize].item.id == id)
    }

    // ~60 calls a decision (seen items, exclusions): inlined like `add`.
    #[inline(always)]
    pub(super) fn get_mut(&mut self, item: &str) -> Option<&mut Cand<'a>> {
        let at = *self.slot.get(&crate::model::item_hash(item))?;
        let at = if self.cands[at as usize].item.id == item {
            at
        } else {
            self.collided(item)?
        };
        self.cands.get_mut(at as usize)
    }

    /// An item's record; a missing shard is counted (the decision goes on without it).
    pub(super) fn find(&mut self, id: &str) -> Option<&'a Record> {
        match find(self.head, self.shards, id) {
            Found::Item(r) => Some(r),
            Found::Absent => None,
            Found::Missing => {
                self.missing += 1;
                None
            }
        }
    }

    pub(super) fn pop_norm(&self, popularity: f32) -> f64 {
        let max = f64::from(self.head.max_popularity);
        if max > 0.0 {
            f64::from(popularity) / max
        } else {
            0.0
        }
    }

    /// Adds `weight × relatedness` for every item related to `anchor`, noting the anchor and
    /// the rules that asked for it.
    pub(super) fn add_related(
        &mut self,
        at: u32,
        rec: &'a Record,
        weight: f64,
        rules: &[u16],
        feedback: bool,
    ) {
        for rel in &rec.related {
            let score = if feedback {
                rel.score * rel.feedback
            } else {
                rel.score
            };
            // A self-relation is the model saying shoppers come back to this item.
            let why = if rel.card.key == rec.card.key && rel.card.id == rec.card.id {
                Why::Recent
            } else {
                Why::Related(at)
            };
            let c = self.add(&rel.card, weight * f64::from(score), why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    /// Adds a category's top items, scored by popularity.
    pub(super) fn add_category(&mut self, cat: u32, weight: f64, why: Why, rules: &[u16]) {
        let head = self.head;
        let Some(list) = head.category_top.get(cat as usize) else {
            return;
        };
        for &i in list {
            let Some(l) = head.listed.get(i as usize) else {
                continue;
            };
            let s = weight * self.pop_norm(l.popularity);
            let c = self.add(&l.card, s, why);
            rules.iter().for_each(|&h| c.note(Why::Rule(h)));
        }
    }

    pub(super) fn add_popular(&mut self, weight: f64) {
        // A zero weight would add nothing but a misleading "popular" reason.
        if weight <= 0.0 {
            return;
        }
        let head = self.head;
        for l in head
            .popular
            .iter()
            .filter_map(|&i| head.listed.get(i as usize))
        {
            let s = weight * self.pop_norm(l.popularity);
            self.add(&l.card, s, Why::Popular);
        }
    }
}

/// An anchor's identity: its hash first, so telling anchors apart rarely compares strings.
#[derive(Clone, Copy)]
pub(super) struct Anchor<'a> {
    pub(super) key: u64,
    pub(super) rec: &'a Record,
}

impl<'a> Anchor<'a> {
    pub(super) fn of(rec: &'a Record) -> Anchor<'a> {
        Anchor {
            key: rec.card.key,
            rec,
        }
    }
}

impl PartialEq for Anchor<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && same(&self.rec.card, &o.rec.card)
    }
}

/// A per-key weight folded from several sources, remembering the first few rules.
pub(super) struct Fold<K> {
    pub(super) key: K,
    pub(super) value: f64,
    pub(super) rules: [u16; MAX_WHY_RULES],
    pub(super) n: u8,
}

impl<K: Copy + PartialEq> Fold<K> {
    pub(super) fn find(list: &mut Vec<Fold<K>>, key: K, init: f64) -> &mut Fold<K> {
        let at = match list.iter().position(|f| f.key == key) {
            Some(at) => at,
            None => {
                list.push(Fold {
                    key,
                    value: init,
                    rules: [0; MAX_WHY_RULES],
                    n: 0,
                });
                list.len() - 1
            }
        };
        &mut list[at]
    }

    pub(super) fn note(&mut self, rule: Option<u16>) {
        if let Some(r) = rule {
            if (self.n as usize) < MAX_WHY_RULES && !self.rules().contains(&r) {
                self.rules[self.n as usize] = r;
                self.n += 1;
            }
        }
    }

    pub(super) fn add(list: &mut Vec<Fold<K>>, key: K, weight: f64, rule: Option<u16>) {
        let f = Fold::find(list, key, 0.0);
        f.value += weight;
        f.note(rule);
    }

    pub(super) fn multiply(list: &mut Vec<Fold<K>>, key: K, factor: f64, rule: u16) {
        let f = Fold::find(list, key, 1.0);
        f.value *= factor;
        f.note(Some(rule));
    }

    pub(super) fn rules(&self) -> &[u16] {
        &self.rules[..self.n as usize]
    }
}

/// Whether two cards name the same item (the same card, mostly: no string compare then).
pub(super) fn same(a: &Card, b: &Card) -> bool {
    std::ptr::eq(a, b) || a.id == b.id
}

#[cfg(test)]
mod tests {
    //! Two items whose 64-bit keys collide (built by hand: real ids never share one in
    //! practice) are still scored, found and explained apart.
    use super::*;
    use crate::model::{NoShards, Record, Related};

    fn card(id: &str, key: u64) -> Card {
        Card {
            id: id.into(),
            category: 0,
            available: true,
            price: 0,
            title: "".into(),
            key,
        }
    }

    fn head() -> Head {
        let e = crate::Engine::from_json(
            crate::EngineConfig::default(),
            r#"{"version":"t","rules":[]}"#,
            br#"{"version":"t","items":[{"id":"z","popularity":0}]}"#,
        )
        .unwrap();
        e.head().clone()
    }

    #[test]
    fn colliding_keys_stay_two_candidates() {
        let head = head();
        let mut sc = Scorer::new(&head, &NoShards);
        // y's key is x's (the collision); lookups by id hash x's real key.
        let k = crate::model::item_hash("x");
        let (x, y) = (card("x", k), card("y", k));
        sc.add(&x, 1.0, Why::Popular);
        sc.add(&y, 2.0, Why::Popular);
        sc.add(&x, 0.5, Why::Popular);
        sc.add(&y, 0.25, Why::Popular);
        assert_eq!(sc.cands.len(), 2);
        assert_eq!(
            (sc.cands[0].item.id.as_str(), sc.cands[0].score),
            ("x", 1.5)
        );
        assert_eq!(
            (sc.cands[1].item.id.as_str(), sc.cands[1].score),
            ("y", 2.25)
        );
        assert_eq!(sc.collided("y"), Some(1));
        assert_eq!(
            sc.collided("x"),
            None,
            "the first holder of a key is in the slot map"
        );
        assert_eq!(sc.get_mut("x").map(|c| c.score), Some(1.5));
        // Zero popularity everywhere: normalised popularity is 0, never NaN.
        assert_eq!(sc.pop_norm(5.0), 0.0);
    }

    #[test]
    fn a_colliding_related_item_is_related_not_a_return_and_anchors_compare_by_item() {
        let head = head();
        let mut sc = Scorer::new(&head, &NoShards);
        let rec = Record {
            card: card("x", 42),
            popularity: 1.0,
            tags: vec![],
            related: vec![
                Related {
                    card: card("y", 42),
                    feedback: 1.0,
                    score: 0.5,
                },
                Related {
                    card: card("x", 42),
                    feedback: 1.0,
                    score: 0.25,
                },
            ],
        };
        sc.add_related(3, &rec, 2.0, &[], true);
        let why = |id: &str| {
            let c = sc.cands.iter().find(|c| c.item.id == id).unwrap();
            (c.score, c.sources[..c.n_sources as usize].to_vec())
        };
        assert_eq!(why("y"), (1.0, vec![Why::Related(3)]));
        assert_eq!(
            why("x"),
            (0.5, vec![Why::Recent]),
            "a self-relation is a return"
        );
        let other = Record {
            card: card("y", 42),
            ..rec.clone()
        };
        assert!(Anchor::of(&rec) == Anchor::of(&rec));
        assert!(
            Anchor::of(&rec) != Anchor::of(&other),
            "same key, another item"
        );
        assert!(!same(&rec.card, &other.card) && same(&rec.card, &rec.card.clone()));
    }
}
