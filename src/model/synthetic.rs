//! Synthetic catalogs of any size, deterministic, generated item by item (nothing is held in
//! memory): the benchmarks' and scale tests' input, from 300 to 10 million items.
//!
//! Item `i` is `sku-<i, at least 5 digits>` (as in the standard workload, whose rule bundle
//! names such items and `cat-NN` categories); its category, price, availability (97%), title and
//! popularity (a long tail: a few items far more popular than most) are functions of `i` and the
//! seed. It has 20 related items, 14 in its own category (nearby indices) and 6 anywhere,
//! scores descending. `changed` alters a given share of items (new related scores and
//! popularity), the way a retraining moves part of a model, to measure incremental publishes.

use super::build::Source;
use super::{Card, Record, Related};
use crate::catalog::{CatalogDoc, ItemDoc};
use crate::workload::Rng;

/// Related items per item.
pub const RELATED: usize = 20;

/// A generated catalog.
#[derive(Debug, Clone)]
pub struct Synthetic {
    items: usize,
    seed: u64,
    /// Share of items whose model changed (0.0 to 1.0), in steps of 1/10,000.
    changed: f64,
    categories: Vec<String>,
    version: String,
}

impl Synthetic {
    /// `items` items, categories growing with size (8 to 100: the head lists each category's
    /// top items, so their number is what bounds the head).
    pub fn new(items: usize, seed: u64) -> Synthetic {
        let n = (items / 10_000).clamp(8, 100);
        Synthetic {
            items,
            seed,
            changed: 0.0,
            categories: (0..n).map(|c| format!("cat-{c:02}")).collect(),
            version: format!("synthetic-{items}-{seed}"),
        }
    }

    /// The same catalog with `n` categories (1 to 10,000) instead of the size-based count.
    pub fn with_categories(mut self, n: usize) -> Synthetic {
        self.categories = (0..n.clamp(1, 10_000))
            .map(|c| format!("cat-{c:02}"))
            .collect();
        self.version = format!("{}-cat-{n}", self.version);
        self
    }

    /// The same catalog with a share of its items' models changed.
    pub fn with_changed(mut self, share: f64) -> Synthetic {
        self.changed = share.clamp(0.0, 1.0);
        self.version = format!("{}-changed-{share}", self.version);
        self
    }

    fn rng(&self, i: usize, salt: u64) -> Rng {
        let mut r = Rng(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt);
        r.next_u64();
        r
    }

    fn is_changed(&self, i: usize) -> bool {
        (self.rng(i, 3).below(10_000) as f64) < self.changed * 10_000.0
    }

    fn category_of(&self, i: usize) -> usize {
        i % self.categories.len()
    }

    /// The catalog as JSON documents (for small sizes: it is all in memory).
    pub fn to_doc(&self) -> CatalogDoc {
        CatalogDoc {
            version: self.version.clone(),
            items: (0..self.items)
                .map(|i| {
                    let r = self.record(i);
                    ItemDoc {
                        id: r.card.id.clone(),
                        category: Some(self.categories[self.category_of(i)].clone()),
                        price: r.card.price(),
                        available: r.card.available,
                        tags: Vec::new(),
                        title: r.card.title().map(|t| t.to_string()),
                        popularity: r.popularity,
                        related: r
                            .related
                            .iter()
                            .map(|x| (x.card.id.clone(), x.score))
                            .collect(),
                        feedback: Vec::new(),
                    }
                })
                .collect(),
        }
    }
}

/// Id of generated item `i`.
pub fn item_id(i: usize) -> String {
    format!("sku-{i:05}")
}

impl Source for Synthetic {
    fn version(&self) -> &str {
        &self.version
    }
    fn categories(&self) -> &[String] {
        &self.categories
    }
    fn len(&self) -> usize {
        self.items
    }
    fn card(&self, i: usize) -> Card {
        let mut r = self.rng(i, 1);
        Card {
            id: item_id(i),
            category: self.category_of(i) as u32 + 1,
            available: r.below(100) >= 3,
            price: 199 + r.below(50_000) as u64,
            title: format!(
                "Product {i} {}",
                ["Red", "Blue", "Plain", "Pro"][r.below(4)]
            )
            .into(),
            key: 0,
        }
    }
    fn popularity(&self, i: usize) -> f32 {
        let mut r = self.rng(i, 2);
        // A long tail: 1e6 / rank-ish, rank drawn per item.
        let base = 1e6 / (1.0 + r.below(self.items.max(1)) as f32);
        if self.is_changed(i) {
            base * 1.5 + 1.0
        } else {
            base
        }
    }
    fn record(&self, i: usize) -> Record {
        let n = self.items;
        let ncat = self.categories.len();
        let mut r = self.rng(i, 4);
        let mut related: Vec<Related> = Vec::with_capacity(RELATED);
        let scale = if self.is_changed(i) { 0.5 } else { 1.0 };
        for k in 0..RELATED {
            let j = if k < 14 {
                (i + ncat * (1 + r.below(400))) % n
            } else {
                r.below(n)
            };
            if j == i || related.iter().any(|x| x.card.id == item_id(j)) {
                continue;
            }
            related.push(Related {
                card: self.card(j),
                score: scale * (1.0 - k as f32 * 0.04),
                feedback: 1.0,
            });
        }
        Record {
            card: self.card(i),
            popularity: self.popularity(i),
            tags: Vec::new(),
            related,
        }
    }
}
