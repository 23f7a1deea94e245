//! Ranking steps on a five-item catalog, with scores derived by hand from the policy weights.

use crate::{DecideRequest, Decision, Engine, EngineConfig, Event, EventKind};

const T: u64 = 1_764_201_600_000;

/// a → b (0.5), c (0.25); d has popularity 0; e is unavailable.
const CATALOG: &str = r#"{"version":"t","items":[
  {"id":"a","category":"x","popularity":10,"related":[["b",0.5],["c",0.25]]},
  {"id":"b","category":"y","popularity":6},
  {"id":"c","category":"y","popularity":4},
  {"id":"d","category":"z","popularity":0},
  {"id":"e","category":"z","popularity":2,"available":false}]}"#;

fn engine(settings: &str, rules: &str) -> Engine {
    let bundle = format!(r#"{{"version":"t","settings":{settings},"rules":[{rules}]}}"#);
    Engine::from_json(EngineConfig::default(), &bundle, CATALOG.as_bytes()).unwrap()
}

fn decide(e: &Engine, events: &[Event], limit: usize) -> Decision {
    e.decide(&DecideRequest {
        events,
        now_ms: T + 1000,
        limit,
        ..Default::default()
    })
}

fn ids(d: &Decision) -> Vec<&str> {
    d.items.iter().map(|r| r.id.as_str()).collect()
}

fn score(d: &Decision, id: &str) -> Option<f64> {
    d.items.iter().find(|r| r.id == id).map(|r| r.score)
}

#[test]
fn an_anchor_counts_by_its_kind_weight_and_zero_scores_are_left_out() {
    // Only related items and popularity (0.05 × popularity / 10) score; a is seen but allowed,
    // and nothing sources it but popularity.
    let e = engine(
        r#"{"seen_policy":"allow","weights":{"related":1,"category":0,"popular":0.05,"recent":0}}"#,
        "",
    );
    let view = decide(&e, &[Event::new(EventKind::View, "a", T)], 10);
    // b: related 1 × decay 1 × view 1.0 × 0.5, plus popular 0.05 × 6/10 = 0.53.
    assert_eq!(ids(&view), ["b", "c", "a"]);
    assert!((score(&view, "b").unwrap() - 0.53).abs() < 1e-9);
    // c: 0.25 + 0.05 × 0.4 = 0.27; a: 0.05 × 1 = 0.05; d scores 0 and e is unavailable.
    assert!((score(&view, "c").unwrap() - 0.27).abs() < 1e-9);
    assert!((score(&view, "a").unwrap() - 0.05).abs() < 1e-9);
    let cart = decide(&e, &[Event::new(EventKind::AddToCart, "a", T)], 10);
    // An add-to-cart anchor weighs 1.5: b = 0.75 + 0.03, c = 0.375 + 0.02.
    assert!((score(&cart, "b").unwrap() - 0.78).abs() < 1e-9);
    assert!((score(&cart, "c").unwrap() - 0.395).abs() < 1e-9);
}

#[test]
fn recently_seen_items_are_left_out_or_demoted_by_policy() {
    let seen = [Event::new(EventKind::View, "b", T)];
    let with = |policy: &str| {
        let e = engine(
            &format!(r#"{{"seen_policy":"{policy}","seen_demote_factor":0.5}}"#),
            "",
        );
        decide(&e, &seen, 10)
    };
    let (out, demoted, allowed) = (with("exclude_recent"), with("demote"), with("allow"));
    assert!(!ids(&out).contains(&"b"), "{:?}", ids(&out));
    let (d, a) = (score(&demoted, "b").unwrap(), score(&allowed, "b").unwrap());
    assert!((d - a * 0.5).abs() < 1e-12, "{d} vs {a}");
}

#[test]
fn pins_stand_only_when_available_and_first_for_their_slot_and_item() {
    let e = engine(
        "{}",
        r#"{"id":"pins","when":{"all":[]},"then":[
          {"pin":{"item":"e","slot":0}},
          {"pin":{"item":"d","slot":1}},
          {"pin":{"item":"c","slot":1}},
          {"pin":{"item":"d","slot":2}}]}"#,
    );
    let d = decide(&e, &[], 4);
    let at = |i: usize| {
        (
            d.items[i].id.as_str(),
            d.items[i].why.iter().any(|w| &**w == "pin:pins"),
        )
    };
    assert_ne!(at(0).0, "e", "an unavailable item is never pinned");
    assert_eq!(at(1), ("d", true));
    assert_eq!(ids(&d).iter().filter(|&&i| i == "d").count(), 1);
    assert!(d
        .items
        .iter()
        .all(|r| r.id == "d" || !r.why.iter().any(|w| &**w == "pin:pins")));
}

#[test]
fn a_rule_may_let_purchased_items_back_in() {
    let bought = [Event::new(EventKind::Purchase, "b", T)];
    let default = decide(&engine("{}", ""), &bought, 10);
    assert!(!ids(&default).contains(&"b"));
    let rebuy = engine(
        "{}",
        r#"{"id":"rebuy","when":{"all":[]},"then":[{"exclude_purchased":false}]}"#,
    );
    assert!(ids(&decide(&rebuy, &bought, 10)).contains(&"b"));
}

#[test]
fn exactly_as_many_candidates_as_the_partial_sort_takes_rank_like_one_more() {
    // limit 4: the partial sort takes the best 32 candidates when there are more than 32.
    for n in [31, 32, 33] {
        let items: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"id":"i{i:02}","popularity":{}}}"#, i + 1))
            .collect();
        let catalog = format!(r#"{{"version":"t","items":[{}]}}"#, items.join(","));
        let e = Engine::from_json(
            EngineConfig::default(),
            r#"{"version":"t","rules":[]}"#,
            catalog.as_bytes(),
        )
        .unwrap();
        let d = decide(&e, &[], 4);
        let want: Vec<String> = (0..4).map(|k| format!("i{:02}", n - 1 - k)).collect();
        assert_eq!(ids(&d), want, "{n} candidates");
    }
}

#[test]
fn a_pinned_item_uses_up_a_place_of_its_category_under_the_cap() {
    let capped =
        |rules: &str| ids(&decide(&engine(r#"{"max_per_category":1}"#, rules), &[], 4)).join(",");
    // Popularity alone: a (x), b (y); c (y) is capped out.
    assert_eq!(capped(""), "a,b");
    // c pinned: it stands, and y has no place left for b.
    let pin = r#"{"id":"pin-c","when":{"all":[]},"then":[{"pin":{"item":"c","slot":0}}]}"#;
    assert_eq!(capped(pin), "c,a");
}

#[test]
fn an_item_names_at_most_four_rules_in_its_why() {
    let rules: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id":"r{i}","when":{{"all":[]}},"then":[{{"boost_category":{{"category":"y","weight":1.1}}}}]}}"#))
        .collect();
    let d = decide(&engine("{}", &rules.join(",")), &[], 4);
    let b = d.items.iter().find(|r| r.id == "b").unwrap();
    let named: Vec<&str> = b
        .why
        .iter()
        .map(|w| &**w)
        .filter(|w| w.starts_with("rule:"))
        .collect();
    assert_eq!(named, ["rule:r0", "rule:r1", "rule:r2", "rule:r3"]);
    assert_eq!(d.rule_hits.len(), 6, "all six fired");
}

#[test]
fn tiers_parse_from_their_wire_names() {
    use crate::Tier;
    for t in [Tier::Full, Tier::Cached, Tier::Static, Tier::Browser] {
        assert_eq!(Tier::parse(t.as_str()), Some(t));
    }
    assert_eq!(Tier::parse("gold"), None);
}

#[test]
fn the_highest_priority_rule_decides_purchases_and_the_cap() {
    let bought = [Event::new(EventKind::Purchase, "b", T)];
    let two = |first: &str, second: &str| {
        format!(
            r#"{{"id":"high","priority":10,"when":{{"all":[]}},"then":[{first}]}},
               {{"id":"low","priority":5,"when":{{"all":[]}},"then":[{second}]}}"#
        )
    };
    let e = engine(
        r#"{"exclude_purchased":false}"#,
        &two(
            r#"{"exclude_purchased":true}"#,
            r#"{"exclude_purchased":false}"#,
        ),
    );
    assert!(
        !ids(&decide(&e, &bought, 10)).contains(&"b"),
        "high's exclusion stands"
    );
    let e = engine(
        "{}",
        &two(r#"{"cap_per_category":1}"#, r#"{"cap_per_category":3}"#),
    );
    // Popularity alone: a (x), b and c (y): the cap of 1 leaves one y.
    assert_eq!(ids(&decide(&e, &[], 10)), ["a", "b"]);
}

#[test]
fn a_zero_recent_weight_adds_no_recent_reason() {
    let e = engine(r#"{"seen_policy":"allow"}"#, "");
    let d = decide(&e, &[Event::new(EventKind::View, "a", T)], 10);
    let a = d
        .items
        .iter()
        .find(|r| r.id == "a")
        .expect("allowed back by popularity");
    assert!(!a.why.iter().any(|w| &**w == "recent"), "{:?}", a.why);
}

#[test]
fn two_pins_of_one_category_fill_its_places_under_the_cap() {
    let catalog = r#"{"version":"t","items":[
      {"id":"y1","category":"y","popularity":9},{"id":"y2","category":"y","popularity":8},
      {"id":"y3","category":"y","popularity":7},{"id":"x1","category":"x","popularity":1}]}"#;
    let bundle = r#"{"version":"t","settings":{"max_per_category":2},"rules":[{"id":"p","when":{"all":[]},
      "then":[{"pin":{"item":"y3","slot":0}},{"pin":{"item":"y2","slot":1}}]}]}"#;
    let e = Engine::from_json(EngineConfig::default(), bundle, catalog.as_bytes()).unwrap();
    // y3 and y2 pinned use both of y's places: y1, the most popular, has none left.
    assert_eq!(ids(&decide(&e, &[], 4)), ["y3", "y2", "x1"]);
}

#[test]
fn a_pin_past_the_list_does_not_stand() {
    let e = engine(
        "{}",
        r#"{"id":"late","when":{"all":[]},"then":[{"pin":{"item":"d","slot":3}}]}"#,
    );
    // limit 3: slot 3 is past the list; d (popularity 0) has no other way in.
    let d = decide(&e, &[], 3);
    assert_eq!(ids(&d), ["a", "b", "c"]);
}

#[test]
fn when_the_cap_empties_the_partial_sort_the_full_ranking_fills_the_list() {
    // 40 items of category y outrank 3 of other categories; limit 4 takes the best 32 first,
    // of which the cap of 1 keeps only one: the rest must come from the full ranking.
    let mut items: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"id":"y{i:02}","category":"y","popularity":{}}}"#,
                100 + i
            )
        })
        .collect();
    for (i, c) in ["p", "q", "r"].iter().enumerate() {
        items.push(format!(
            r#"{{"id":"{c}","category":"{c}","popularity":{}}}"#,
            10 - i
        ));
    }
    let catalog = format!(r#"{{"version":"t","items":[{}]}}"#, items.join(","));
    let bundle = r#"{"version":"t","settings":{"max_per_category":1},"rules":[]}"#;
    let e = Engine::from_json(EngineConfig::default(), bundle, catalog.as_bytes()).unwrap();
    assert_eq!(ids(&decide(&e, &[], 4)), ["y39", "p", "q", "r"]);
}

#[test]
fn an_item_reached_by_five_rules_names_the_first_four() {
    // Four category boosts of y, and a fifth rule anchoring on a (related to b).
    let mut rules: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"id":"r{i}","priority":{},"when":{{"all":[]}},"then":[{{"boost_category":{{"category":"y","weight":1.1}}}}]}}"#, 10 - i))
        .collect();
    rules.push(r#"{"id":"r4","priority":1,"when":{"all":[]},"then":[{"boost_related":{"item":"a","weight":1}}]}"#.into());
    let d = decide(&engine("{}", &rules.join(",")), &[], 4);
    let b = d.items.iter().find(|r| r.id == "b").unwrap();
    let named = b.why.iter().filter(|w| w.starts_with("rule:")).count();
    assert_eq!(named, 4, "{:?}", b.why);
    assert_eq!(d.rule_hits.len(), 5);
}

#[test]
fn a_return_weighs_by_the_kind_of_the_shopper_s_own_event() {
    let e = engine(
        r#"{"seen_policy":"allow","weights":{"related":0,"category":0,"popular":0,"recent":0.25}}"#,
        "",
    );
    // recent 0.25 x decay 1 x add-to-cart 1.5.
    let d = decide(&e, &[Event::new(EventKind::AddToCart, "a", T)], 10);
    assert_eq!(ids(&d), ["a"]);
    assert!((score(&d, "a").unwrap() - 0.375).abs() < 1e-12);
}
