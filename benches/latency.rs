//! Per-call latency of the standard decision with the system allocator (glibc malloc).
const HOST: &str = "native";
include!("common/latency.rs");
