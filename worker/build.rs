//! Embeds the tracker (`www/tracker.js`) the worker serves, without its comments and
//! indentation: fewer bytes in the wasm and on the wire. Safe for that file: it has no
//! multi-line template literals or strings. Also embeds the API's OpenAPI document, minified.

use std::path::Path;

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/tracker.js");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = std::fs::read_to_string(&src).expect("www/tracker.js");
    let slim: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out_dir).join("tracker.js");
    std::fs::write(out, slim.join("\n") + "\n").expect("write tracker.js");

    // The API's OpenAPI document, served at /v1/openapi.json, without its whitespace.
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/edge.openapi.json");
    println!("cargo:rerun-if-changed={}", doc.display());
    let text = std::fs::read_to_string(&doc).expect("schema/edge.openapi.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    std::fs::write(Path::new(&out_dir).join("openapi.json"), value.to_string())
        .expect("write openapi.json");
}
