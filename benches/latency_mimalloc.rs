//! The same per-call latency with mimalloc as the global allocator: allocation is a large share
//! of a decision's cost, so the allocator a native host picks shows up directly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
const HOST: &str = "native-mimalloc";
include!("common/latency.rs");
