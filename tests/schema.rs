//! The published JSON Schema (schema/rules.schema.json) is generated from the bundle types;
//! this keeps the committed copy in step, and checks the demo bundle against both.

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
