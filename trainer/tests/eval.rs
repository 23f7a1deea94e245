//! `eval` on a tiny log whose every prediction was worked out by hand (see the comments):
//! the engine row, POP and session-POP must come out exactly.

use edgerec::catalog::Catalog;
use edgerec::engine::{Engine, EngineConfig};
use edgerec::rules::compile_json;
use edgerec_trainer::clicklog::read_sessions;
use edgerec_trainer::eval::replay;
use edgerec_trainer::model::{Model, ModelConfig};

// Sessions a b c | a b | b c, half-life off, steps 10, backward 0.5:
// a: b 2, c 0.5        → b 1.0, c 0.25
// b: a 1.0, c 2.0      → c 1.0, a 0.5
// c: a 0.25, b 1.0     → b 1.0, a 0.25
// popularity a 2, b 3, c 2 → POP list [b, a, c].
const TRAIN: &str =
    "SessionId\tItemId\tTime\n1\ta\t1\n1\tb\t2\n1\tc\t3\n2\ta\t1\n2\tb\t2\n3\tb\t1\n3\tc\t2\n";
// X: a b c; Y: c a b; W: a a; Z: a (too short, no prediction) → 5 predictions.
const TEST: &str = "SessionId\tItemId\tTime\nX\ta\t10\nX\tb\t11\nX\tc\t12\nY\tc\t10\nY\ta\t11\nY\tb\t12\nW\ta\t10\nW\ta\t11\nZ\ta\t10\n";
const BUNDLE: &str = r#"{"version": "hand", "settings": {"recent_anchors": 5, "recency_decay": 0.5,
  "weights": {"related": 1, "category": 0, "popular": 0}}, "rules": []}"#;

/// The model trained on `TRAIN` with decay off (related lists worked out above).
fn hand_model() -> edgerec::catalog::CatalogDoc {
    let cfg = ModelConfig {
        half_life_ms: 0,
        ..ModelConfig::default()
    };
    let mut m = Model::new();
    read_sessions(TRAIN.as_bytes(), |s| m.observe_session(&cfg, &s.clicks)).unwrap();
    m.build(&cfg, None)
}

#[test]
fn hand_computed_hit_rate_and_mrr() {
    let doc = hand_model();
    let related = |id: &str| {
        doc.items
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .related
            .clone()
    };
    assert_eq!(related("a"), vec![("b".into(), 1.0), ("c".into(), 0.25)]);
    assert_eq!(related("b"), vec![("c".into(), 1.0), ("a".into(), 0.5)]);
    assert_eq!(related("c"), vec![("b".into(), 1.0), ("a".into(), 0.25)]);

    let config = EngineConfig::default();
    let bundle = compile_json(BUNDLE, config.session.horizon_ms).unwrap();
    let engine = Engine::with_catalog(config, bundle, &Catalog::from_doc(&doc).unwrap()).unwrap();
    let popular: Vec<String> = ["b", "a", "c"].map(String::from).to_vec();
    let report = replay(
        &[("engine".into(), &engine)],
        &popular,
        TEST.as_bytes(),
        &[1, 2],
    )
    .unwrap();
    let [e, pop, spop] = &report.rows[..] else {
        panic!("three rows")
    };
    assert_eq!(e.metrics.predictions, 5);
    // Engine (seen items excluded):
    // X after a: [b, c], next b → 1.  X after a,b: b→c 1 + a→c 0.125 → [c], next c → 1.
    // Y after c: [b, a], next a → 2.  Y after c,a: [b], next b → 1.  W after a: next a → miss.
    assert_eq!(e.metrics.hit_rate(1), 3.0 / 5.0);
    assert_eq!(e.metrics.hit_rate(2), 4.0 / 5.0);
    assert_eq!(e.metrics.mrr(2), (1.0 + 1.0 + 0.5 + 1.0) / 5.0);
    // POP [b, a, c]: next b → 1, c → 3, a → 2, b → 1, a → 2.
    assert_eq!(pop.metrics.hit_rate(1), 2.0 / 5.0);
    assert_eq!(pop.metrics.hit_rate(2), 4.0 / 5.0);
    assert_eq!(pop.metrics.mrr(2), (1.0 + 0.5 + 1.0 + 0.5) / 5.0);
    // session-POP (count, then POP rank): [a,b,c]→b 2; [b,a,c]→c 3; [c,b,a]→a 3;
    // [a,c,b]→b 3; [a,b,c]→a 1.
    assert_eq!(spop.metrics.hit_rate(1), 1.0 / 5.0);
    assert_eq!(spop.metrics.hit_rate(2), 2.0 / 5.0);
    assert_eq!(spop.metrics.mrr(2), (0.5 + 1.0) / 5.0);
    assert_eq!(report.log.sessions, 4);
}

/// `seen_policy: allow` against the default (`exclude_recent`), and an item the catalog does
/// not know, on the same hand-computed model (related lists as above).
#[test]
fn seen_items_allowed_can_be_hits_and_unknown_items_are_misses() {
    let catalog = Catalog::from_doc(&hand_model()).unwrap();
    let config = EngineConfig::default();
    let engine = |bundle: &str| {
        Engine::with_catalog(
            config,
            compile_json(bundle, config.session.horizon_ms).unwrap(),
            &catalog,
        )
        .unwrap()
    };
    let allow = engine(&BUNDLE.replace(
        r#""recent_anchors": 5"#,
        r#""seen_policy": "allow", "recent_anchors": 5"#,
    ));
    let exclude = engine(BUNDLE);
    // V: c a c; U: a q (q is in no catalog) → 3 predictions.
    // V after c: anchor c → b 1.0, a .25 → [b, a]; next a → rank 2 (both policies).
    // V after c, a: anchors a 1.0, c .5 → b 1 + .5 = 1.5, c .25, a .125 (c→a .25 × .5).
    //   allow: [b, c] → next c → rank 2. exclude_recent: c and a were seen → [b] → miss.
    // U after a: [b, c]; next q → miss: an item nobody recommends counts against every row.
    const LOG: &str = "SessionId\tItemId\tTime\nV\tc\t10\nV\ta\t11\nV\tc\t12\nU\ta\t10\nU\tq\t11\n";
    let report = replay(
        &[("allow".into(), &allow), ("exclude".into(), &exclude)],
        &["b", "a", "c"].map(String::from),
        LOG.as_bytes(),
        &[1, 2],
    )
    .unwrap();
    let (a, x) = (&report.rows[0].metrics, &report.rows[1].metrics);
    assert_eq!((a.predictions, x.predictions), (3, 3));
    assert_eq!((a.hit_rate(1), a.hit_rate(2)), (0.0, 2.0 / 3.0));
    assert_eq!(a.mrr(2), (0.5 + 0.5) / 3.0);
    assert_eq!((x.hit_rate(1), x.hit_rate(2)), (0.0, 1.0 / 3.0));
    assert_eq!(x.mrr(2), 0.5 / 3.0);
}

/// `learn_feedback` on six sessions in time order, half of them replayed (worked by hand):
/// the oldest three (a b, a b, a b) teach a→b, so each replayed session's first decision shows
/// b, placed by a's list at position 0. The replayed a c, a c, a b add three impressions of
/// a→b at 0 and one click (the last session's). The whole-log model then holds exactly those.
#[test]
fn feedback_replay_counts_what_the_engine_would_have_shown() {
    let log = "SessionId\tItemId\tTime\n1\ta\t1\n1\tb\t2\n2\ta\t3\n2\tb\t4\n3\ta\t5\n3\tb\t6\n\
               4\ta\t7\n4\tc\t8\n5\ta\t9\n5\tc\t10\n6\ta\t11\n6\tb\t12\n";
    let cfg = ModelConfig {
        half_life_ms: 0,
        ..ModelConfig::default()
    };
    let mut m = Model::new();
    read_sessions(log.as_bytes(), |s| m.observe_session(&cfg, &s.clicks)).unwrap();
    let bundle = compile_json(BUNDLE, EngineConfig::default().session.horizon_ms).unwrap();
    let st = edgerec_trainer::eval::learn_feedback(&mut m, &cfg, &bundle, log.as_bytes(), 0.5, 2)
        .unwrap();
    assert_eq!(
        (
            st.fit_sessions,
            st.replayed_sessions,
            st.impressions,
            st.clicks
        ),
        (3, 3, 3, 1)
    );
    // Position curve at 0: (1 + 1/3 × 20) / (3 + 20) = 1/3, so 3 impressions predict 1 click:
    // the one observed → factor (1 + 3) / (1 + 3) = 1.
    let f = m.feedback(&cfg, "a");
    assert_eq!(f.len(), 1);
    assert!((f["b"] - 1.0).abs() < 1e-12, "{f:?}");
}
