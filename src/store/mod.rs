//! etcd access: one connection at a time to one member, moved to the next member when
//! a call fails for a transport reason, so that disco stays available while a minority
//! of members is down (etcd-client's own balancer keeps dead members in rotation).
//! The watch resumes from the last revision it delivered after any disconnect and, when
//! that revision was compacted away, re-reads the whole prefix and says so.
//!
//! - `config`: how to reach etcd ([`EtcdConfig`]).
//! - `error`: why a call failed ([`StoreError`]).
//! - `client`: the handle ([`Store`]) and its failover from member to member.
//! - `kv`: reads, writes, transactions and leases.
//! - `watch`: the watch of a prefix ([`Store::watch`]).

mod client;
mod config;
mod error;
mod kv;
mod watch;

pub use client::Store;
pub use config::EtcdConfig;
pub use error::StoreError;
pub use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnResponse};
pub use kv::Kv;
pub use watch::{WatchSettings, WatchUpdate};
