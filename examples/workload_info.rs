//! Prints what the standard workload's decision looks like (rule hits, sizes).
fn main() {
    let w = edgerec::workload::Workload::new();
    let d = w.decide_one();
    let state = edgerec::SessionState::decode(&w.blob, &edgerec::SessionConfig::default()).unwrap();
    println!("rules fired: {}", d.rule_hits.len());
    println!(
        "items: {:?}",
        d.items
            .iter()
            .map(|r| (&r.id, r.score, &r.why))
            .collect::<Vec<_>>()
    );
    println!(
        "blob: {} bytes; as JSON: {} bytes",
        w.blob.len(),
        state.to_debug_json().to_string().len()
    );
    println!(
        "session: {} items, {} cats, ring {}, buckets {}",
        state.items.len(),
        state.categories.len(),
        state.ring.len(),
        state.buckets.len()
    );
}
