//! Embeds the tracker (`www/tracker.js`) the worker serves, without its comments and
//! indentation: fewer bytes in the wasm and on the wire. Safe for that file: it has no
//! multi-line template literals or strings.

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
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("tracker.js");
    std::fs::write(out, slim.join("\n") + "\n").expect("write tracker.js");
}
