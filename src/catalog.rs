//! Catalog as authored: items, item→related lists, popularity; the data recommendations are
//! drawn from.
//!
//! [`CatalogDoc`] is the JSON people write and tools exchange; [`Catalog`] is it validated, with
//! lookup tables and ranked lists. Decisions never read a `Catalog` directly: it is published
//! into the sharded form the edge reads piecewise ([`crate::model`]).

use crate::error::FieldError;
use crate::event::check_id;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Most related items kept per item.
pub const MAX_RELATED: usize = 50;
/// Length of the global popularity list kept for candidates.
pub const POPULAR_LEN: usize = 200;
/// Length of each per-category top list.
pub const CATEGORY_TOP_LEN: usize = 50;

/// A catalog as authored (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogDoc {
    /// Version label (changes with every published model).
    pub version: String,
    /// The items.
    pub items: Vec<ItemDoc>,
}

/// One item as authored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemDoc {
    /// Item id.
    pub id: String,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// In stock / published.
    #[serde(default = "yes")]
    pub available: bool,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Display title (demo storefront).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Popularity score (higher = more popular).
    #[serde(default)]
    pub popularity: f32,
    /// Related items with scores in (0, 1], best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<(String, f32)>,
    /// Exposure feedback on some of those related items: a factor on the score, learned by
    /// the trainer from impressions and clicks per position (1 when not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<(String, f32)>,
}

/// Range a feedback factor must lie in.
pub const FEEDBACK_RANGE: std::ops::RangeInclusive<f32> = (1.0 / 64.0)..=64.0;

fn yes() -> bool {
    true
}

/// Why a catalog could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// Not parseable.
    #[error("catalog does not parse: {0}")]
    Parse(String),
    /// Parsed but inconsistent.
    #[error("invalid catalog: {}", crate::error::join(.0))]
    Invalid(Vec<FieldError>),
}

/// One loaded item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Item id.
    pub id: String,
    /// Category index.
    pub category: Option<u32>,
    /// Price.
    pub price: Option<f64>,
    /// Available.
    pub available: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Title.
    pub title: Option<String>,
    /// Popularity.
    pub popularity: f32,
}

/// A loaded catalog, ready for decisions.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Version label.
    pub version: String,
    /// Items in snapshot order.
    pub items: Vec<Item>,
    /// Category names.
    pub categories: Vec<String>,
    /// Related items per item (index, score), best first.
    pub related: Vec<Vec<(u32, f32)>>,
    /// Exposure feedback per item: (related index, factor), for the related items that have
    /// one.
    pub feedback: Vec<Vec<(u32, f32)>>,
    /// Most popular available items, best first (ties by id).
    pub popular: Vec<u32>,
    /// Most popular available items per category.
    pub category_top: Vec<Vec<u32>>,
    /// Highest popularity, for normalising.
    pub max_popularity: f32,
    index: FxHashMap<String, u32>,
    category_index: FxHashMap<String, u32>,
}

impl Catalog {
    /// Loads a JSON catalog.
    pub fn from_json(json: &[u8]) -> Result<Catalog, CatalogError> {
        let doc: CatalogDoc =
            serde_json::from_slice(json).map_err(|e| CatalogError::Parse(e.to_string()))?;
        Catalog::from_doc(&doc)
    }

    /// Loads a parsed catalog document, validating it.
    pub fn from_doc(doc: &CatalogDoc) -> Result<Catalog, CatalogError> {
        let mut errors = Vec::new();
        let mut err = |f: String, m: &str| {
            if errors.len() < 50 {
                errors.push(FieldError::new(f, m));
            }
        };
        let mut index = FxHashMap::default();
        let mut categories: Vec<String> = Vec::new();
        let mut category_index: FxHashMap<String, u32> = FxHashMap::default();
        let mut items = Vec::with_capacity(doc.items.len());
        for (i, it) in doc.items.iter().enumerate() {
            if let Err(m) = check_id(&it.id) {
                err(format!("items[{i}].id"), m);
            }
            if index.insert(it.id.clone(), i as u32).is_some() {
                err(format!("items[{i}].id"), "duplicate id");
            }
            let category = it.category.as_ref().map(|c| {
                if let Err(m) = check_id(c) {
                    err(format!("items[{i}].category"), m);
                }
                *category_index.entry(c.clone()).or_insert_with(|| {
                    categories.push(c.clone());
                    (categories.len() - 1) as u32
                })
            });
            if it
                .price
                .is_some_and(|p| !(p.is_finite() && (0.0..=1e12).contains(&p)))
            {
                err(
                    format!("items[{i}].price"),
                    "must be a finite number from 0 to 1e12",
                );
            }
            if !(it.popularity.is_finite() && it.popularity >= 0.0) {
                err(
                    format!("items[{i}].popularity"),
                    "must be a finite number >= 0",
                );
            }
            if it.related.len() > MAX_RELATED {
                err(format!("items[{i}].related"), "at most 50 related items");
            }
            items.push(Item {
                id: it.id.clone(),
                category,
                price: it.price,
                available: it.available,
                tags: it.tags.clone(),
                title: it.title.clone(),
                popularity: it.popularity,
            });
        }
        let mut related = Vec::with_capacity(doc.items.len());
        for (i, it) in doc.items.iter().enumerate() {
            let mut list = Vec::with_capacity(it.related.len());
            for (j, (rid, score)) in it.related.iter().enumerate() {
                match index.get(rid) {
                    None => err(format!("items[{i}].related[{j}]"), "unknown item id"),
                    Some(_) if !(score.is_finite() && *score > 0.0) => {
                        err(format!("items[{i}].related[{j}]"), "score must be > 0")
                    }
                    Some(&r) => list.push((r, *score)),
                }
            }
            related.push(list);
        }
        let mut feedback = Vec::with_capacity(doc.items.len());
        for (i, it) in doc.items.iter().enumerate() {
            let mut list = Vec::with_capacity(it.feedback.len());
            for (j, (rid, f)) in it.feedback.iter().enumerate() {
                let at = format!("items[{i}].feedback[{j}]");
                if !it.related.iter().any(|(r, _)| r == rid) {
                    err(at, "not one of the item's related items");
                } else if !FEEDBACK_RANGE.contains(f) {
                    err(at, "factor must be from 1/64 to 64");
                } else if let Some(&r) = index.get(rid) {
                    list.push((r, *f));
                }
            }
            feedback.push(list);
        }
        if !errors.is_empty() {
            return Err(CatalogError::Invalid(errors));
        }
        Ok(Catalog::build(
            doc.version.clone(),
            items,
            categories,
            related,
            index,
            category_index,
        )
        .with_feedback(feedback))
    }

    fn build(
        version: String,
        items: Vec<Item>,
        categories: Vec<String>,
        mut related: Vec<Vec<(u32, f32)>>,
        index: FxHashMap<String, u32>,
        category_index: FxHashMap<String, u32>,
    ) -> Catalog {
        for list in &mut related {
            list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(MAX_RELATED);
        }
        let mut ranked: Vec<u32> = (0..items.len() as u32)
            .filter(|&i| items[i as usize].available)
            .collect();
        ranked.sort_by(|&a, &b| {
            let (x, y) = (&items[a as usize], &items[b as usize]);
            y.popularity
                .total_cmp(&x.popularity)
                .then_with(|| x.id.cmp(&y.id))
        });
        let mut category_top = vec![Vec::new(); categories.len()];
        for &i in &ranked {
            if let Some(c) = items[i as usize].category {
                let list = &mut category_top[c as usize];
                if list.len() < CATEGORY_TOP_LEN {
                    list.push(i);
                }
            }
        }
        let max_popularity = ranked
            .first()
            .map_or(0.0, |&i| items[i as usize].popularity);
        ranked.truncate(POPULAR_LEN);
        Catalog {
            version,
            items,
            categories,
            related,
            feedback: Vec::new(),
            popular: ranked,
            category_top,
            max_popularity,
            index,
            category_index,
        }
    }

    fn with_feedback(mut self, feedback: Vec<Vec<(u32, f32)>>) -> Catalog {
        self.feedback = feedback;
        self
    }

    /// The feedback factor of `related` in item `item`'s related list (1 when it has none).
    pub fn feedback_of(&self, item: usize, related: u32) -> f32 {
        self.feedback
            .get(item)
            .and_then(|l| l.iter().find(|e| e.0 == related))
            .map_or(1.0, |e| e.1)
    }

    /// The item index for an id.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The category index for a name.
    pub fn category_of_name(&self, name: &str) -> Option<u32> {
        self.category_index.get(name).copied()
    }

    /// An item by index.
    pub fn item(&self, idx: u32) -> Option<&Item> {
        self.items.get(idx as usize)
    }

    /// The category name of the item at index `item`.
    pub fn item_category(&self, item: u32) -> Option<&str> {
        let c = self.items.get(item as usize)?.category?;
        self.categories.get(c as usize).map(String::as_str)
    }

    /// Back to the authored form.
    pub fn to_doc(&self) -> CatalogDoc {
        CatalogDoc {
            version: self.version.clone(),
            items: self
                .items
                .iter()
                .enumerate()
                .map(|(i, it)| ItemDoc {
                    id: it.id.clone(),
                    category: self.item_category(i as u32).map(str::to_string),
                    price: it.price,
                    available: it.available,
                    tags: it.tags.clone(),
                    title: it.title.clone(),
                    popularity: it.popularity,
                    related: self.related[i]
                        .iter()
                        .map(|&(r, s)| (self.items[r as usize].id.clone(), s))
                        .collect(),
                    feedback: self
                        .feedback
                        .get(i)
                        .into_iter()
                        .flatten()
                        .map(|&(r, f)| (self.items[r as usize].id.clone(), f))
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> &'static str {
        r#"{"version":"t1","items":[
          {"id":"a","category":"shoes","price":10,"popularity":5,"related":[["b",0.5],["c",0.9]]},
          {"id":"b","category":"shoes","price":12.5,"popularity":9},
          {"id":"c","category":"hats","popularity":9,"available":false}]}"#
    }

    #[test]
    fn loads_ranks_and_round_trips() {
        let c = Catalog::from_json(doc().as_bytes()).unwrap();
        assert_eq!(c.related[0], vec![(2, 0.9), (1, 0.5)]);
        assert_eq!(c.popular, vec![1, 0]); // c unavailable
        assert_eq!(c.category_top[0], vec![1, 0]);
        let back = Catalog::from_doc(&c.to_doc()).unwrap();
        assert_eq!(back.to_doc(), c.to_doc());
    }

    #[test]
    fn names_bad_fields() {
        let bad =
            r#"{"version":"x","items":[{"id":"a","related":[["zz",1]]},{"id":"a","price":-1}]}"#;
        let Err(CatalogError::Invalid(errs)) = Catalog::from_json(bad.as_bytes()) else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["items[1].id", "items[1].price", "items[0].related[0]"]
        );
    }

    fn item(id: &str) -> ItemDoc {
        ItemDoc {
            id: id.into(),
            feedback: Vec::new(),
            category: Some("c".into()),
            price: None,
            available: true,
            tags: vec![],
            title: None,
            popularity: 1.0,
            related: vec![],
        }
    }

    fn refused(items: Vec<ItemDoc>) -> Vec<String> {
        match Catalog::from_doc(&CatalogDoc {
            version: "v".into(),
            items,
        }) {
            Ok(_) => vec![],
            Err(CatalogError::Invalid(e)) => e.into_iter().map(|e| e.field).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn feedback_names_related_items_with_factors_in_range_and_round_trips() {
        let with = |fb: Vec<(&str, f32)>| {
            let mut a = item("a");
            a.related = vec![("b".into(), 1.0), ("c".into(), 0.5)];
            a.feedback = fb.into_iter().map(|(i, f)| (i.to_string(), f)).collect();
            vec![a, item("b"), item("c")]
        };
        let lo = *FEEDBACK_RANGE.start();
        let ok = with(vec![("b", lo), ("c", 64.0)]);
        assert!(refused(ok.clone()).is_empty());
        let cat = Catalog::from_doc(&CatalogDoc {
            version: "v".into(),
            items: ok.clone(),
        })
        .unwrap();
        assert_eq!(cat.feedback_of(0, 1), lo);
        assert_eq!(cat.feedback_of(0, 2), 64.0);
        assert_eq!(cat.feedback_of(1, 0), 1.0, "none listed: 1");
        assert_eq!(cat.to_doc().items[0].feedback, ok[0].feedback);
        for bad in [
            vec![("a", 1.0)],
            vec![("zz", 1.0)],
            vec![("b", 0.0)],
            vec![("b", lo / 2.0)],
            vec![("b", 64.5)],
            vec![("b", f32::NAN)],
        ] {
            assert_eq!(
                refused(with(bad.clone())),
                ["items[0].feedback[0]"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused_and_limits_hold_at_their_edge() {
        for p in [f32::INFINITY, f32::NAN, -1.0] {
            let mut a = item("a");
            a.popularity = p;
            assert_eq!(refused(vec![a]), ["items[0].popularity"], "{p}");
        }
        for score in [f32::INFINITY, f32::NAN, 0.0, -0.5] {
            let mut a = item("a");
            a.related = vec![("b".into(), score)];
            assert_eq!(
                refused(vec![a, item("b")]),
                ["items[0].related[0]"],
                "{score}"
            );
        }
        let mut many: Vec<ItemDoc> = (0..=MAX_RELATED).map(|i| item(&format!("i{i}"))).collect();
        many[0].related = (1..=MAX_RELATED).map(|i| (format!("i{i}"), 1.0)).collect();
        assert_eq!(
            refused(many.clone()),
            Vec::<String>::new(),
            "exactly 50 related"
        );
        many[0].related.push(("i0".into(), 1.0));
        assert_eq!(refused(many), ["items[0].related"]);
    }

    #[test]
    fn category_lists_keep_their_best_category_top_len() {
        let items: Vec<ItemDoc> = (0..CATEGORY_TOP_LEN + 5)
            .map(|i| {
                let mut it = item(&format!("i{i:03}"));
                it.popularity = i as f32;
                it
            })
            .collect();
        let c = Catalog::from_doc(&CatalogDoc {
            version: "v".into(),
            items,
        })
        .unwrap();
        let cat = c.category_of_name("c").unwrap();
        assert_eq!(c.category_of_name("nope"), None);
        let top = &c.category_top[cat as usize];
        assert_eq!(top.len(), CATEGORY_TOP_LEN);
        assert_eq!(top[0] as usize, CATEGORY_TOP_LEN + 4, "most popular first");
    }

    #[test]
    fn lookups_by_id_and_index_and_at_most_50_errors() {
        let c = Catalog::from_json(doc().as_bytes()).unwrap();
        assert_eq!(
            (c.index_of("a"), c.index_of("c"), c.index_of("zz")),
            (Some(0), Some(2), None)
        );
        assert_eq!(c.item(1).map(|i| i.id.as_str()), Some("b"));
        assert!(c.item(3).is_none());
        assert_eq!(
            (c.item_category(0), c.item_category(2)),
            (Some("shoes"), Some("hats"))
        );
        let many: Vec<ItemDoc> = (0..60)
            .map(|i| {
                let mut it = item(&format!("i{i}"));
                it.popularity = -1.0;
                it
            })
            .collect();
        assert_eq!(refused(many).len(), 50);
    }
}
