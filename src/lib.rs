//! disco: the shared library of `disco-agent` and `discoctl`.
//!
//! # Layout
//!
//! - [`validate`]: names, addresses and values that may reach a config file.
//! - [`keys`]: the key space; every etcd key is built and parsed here.
//! - [`model`]: the values stored under those keys.
//! - [`snapshot`]: the routing state at one revision, built from key/values and events.
//! - [`change`]: a change as one compare-and-swap transaction with its audit record.
//! - [`plan`]: discoctl's verbs planned (promote, switch, rollback, dark, weight): pure.
//! - [`rollout`]: automated canaries: steps, the state recorded in etcd, each step
//!   planned, the restore, and the analysis of a step's traffic: pure. One file each:
//!   `steps`, `record`, `planning`, `analysis`.
//! - [`converge`]: waiting until every live LB agent has applied a revision.
//! - [`stats`]: the traffic statistics LB agents publish per app and version, and
//!   their arithmetic (sum over agents, difference over an interval, percentiles).
//! - [`render`]: snapshot → HAProxy, nginx or user-template configuration text.
//! - [`store`]: etcd access that stays available while a minority of members is down,
//!   and a watch that resumes after disconnects and re-reads after compaction. One file
//!   each: `config`, `error`, `client` (the failover), `kv` (and leases), `watch`.
#![forbid(unsafe_code)]

pub mod change;
pub mod converge;
pub mod keys;
pub mod model;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod snapshot;
pub mod stats;
pub mod store;
pub mod validate;

pub use keys::{Key, Keyspace};

/// `e` and its sources, joined by `: ` (`error sending request: connection refused`),
/// for messages that must say why, not only what.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
pub use snapshot::{Change, Snapshot};
