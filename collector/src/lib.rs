//! The origin collector: receives the edge's signed aggregate batches and writes them out as
//! records, losing and doubling nothing. Stateless apart from a bounded dedup window, so it
//! scales by running more copies behind a load balancer.
//!
//! | concern | module |
//! | --- | --- |
//! | settings: flags or environment (clap), refused at start when invalid | [`settings`] |
//! | signature and replay (clock skew) checks | [`auth`] |
//! | dropping redelivered batch ids | [`dedup`] |
//! | where records ([`edgerec::records`]) go: Kafka, or a local file | [`sink`] |
//! | Prometheus metrics: its own, the edge's counters ([`summary`]), the experiment controller's verdicts | [`metrics`], [`experiments`] |
//! | running totals for the dashboard (`/v1/summary`) | [`summary`] |
//! | HTTP routes, the one place a batch is acknowledged; refusals as one error type | [`routes`] |
//! | connections: header timeout, connection cap, graceful shutdown | [`serve`] |

pub mod auth;
pub mod dedup;
pub mod experiments;
pub mod metrics;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod sink;
pub mod summary;
#[cfg(feature = "kafka")]
pub mod tally;
