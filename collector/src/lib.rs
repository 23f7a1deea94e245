//! The origin collector: receives the edge's signed aggregate batches and writes them out as
//! records, losing and doubling nothing. Stateless apart from a bounded dedup window, so it
//! scales by running more copies behind a load balancer.
//!
//! | concern | module |
//! | --- | --- |
//! | settings from the environment | [`settings`] |
//! | signature and replay (clock skew) checks | [`auth`] |
//! | dropping redelivered batch ids | [`dedup`] |
//! | a batch → records (topics, keys, headers, values) | [`records`] |
//! | where records go: Kafka, or a local file | [`sink`], [`kafka`] |
//! | Prometheus metrics | [`metrics`] |
//! | running totals for the dashboard (`/v1/summary`) | [`summary`] |
//! | HTTP routes, the one place a batch is acknowledged | [`routes`] |
//! | connections: header timeout, connection cap, graceful shutdown | [`serve`] |

pub mod auth;
pub mod dedup;
pub mod kafka;
pub mod metrics;
pub mod records;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod sink;
pub mod summary;
pub mod tally;
