//! The published JSON Schema (schema/rules.schema.json) is generated from the bundle types;
//! this keeps the committed copy in step and validates every shipped bundle against it (with a
//! JSON Schema validator, not only by loading it).

#[test]
fn committed_schema_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/rules.schema.json");
    let committed = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        committed,
        edgerec::rules::json_schema(),
        "schema is stale: run `cargo run -p edgerec-cli -- schema > schema/rules.schema.json`"
    );
}

#[test]
fn demo_data_loads() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/data/demo/rules.json")).unwrap();
    let catalog = std::fs::read(format!("{root}/data/demo/catalog.json")).unwrap();
    let engine =
        edgerec::Engine::from_json(edgerec::EngineConfig::default(), &rules, &catalog).unwrap();
    assert!(engine.head().items >= 300);
    assert!(engine.bundle().rules.len() >= 10);
    assert!(engine.head().categories.len() >= 6);
}

/// Every bundle the project ships (the demo, the eval bundles, the corpus fixtures) is valid
/// under the published schema, and the validator is not vacuous: bundles the compiler refuses
/// for their shape are refused by the schema too.
#[test]
fn shipped_bundles_validate_against_the_published_schema() {
    let root = env!("CARGO_MANIFEST_DIR");
    let schema: serde_json::Value =
        serde_json::from_str(&edgerec::rules::json_schema()).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let bundles = [
        "data/demo/rules.json",
        "data/eval/default.json",
        "data/eval/return-aware.json",
        "tests/conformance/fixtures/tiny-rules.json",
        "tests/conformance/fixtures/return-rules.json",
    ];
    for rel in bundles {
        let text = std::fs::read_to_string(format!("{root}/{rel}")).unwrap();
        let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&bundle)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{rel}: {errors:?}");
    }
    for (bad, why) in [
        (r#"{"rules":[]}"#, "no version"),
        (r#"{"version":"1","rules":{}}"#, "rules not a list"),
        (
            r#"{"version":"1","rules":[{"id":"r","when":{},"then":[{"boost_spam":{}}]}]}"#,
            "unknown action",
        ),
        (r#"{"version":1,"rules":[]}"#, "version not a string"),
    ] {
        let v: serde_json::Value = serde_json::from_str(bad).unwrap();
        assert!(
            !validator.is_valid(&v),
            "the schema accepts a bundle with {why}: {bad}"
        );
        assert!(
            edgerec::rules::compile_json(bad, 86_400_000).is_err(),
            "the compiler accepts a bundle with {why}"
        );
    }
}
