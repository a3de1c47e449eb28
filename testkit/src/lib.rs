//! What the workspace's integration tests (and benchmarks) share on top of the harness:
//! a real `disco-agent` process and its config file, the routing state written to and
//! read from etcd, and waiting for what an agent publishes. The harness starts the real
//! things (etcd, HAProxy, nginx); this crate knows disco's own keys, records and config.
//!
//! # Layout
//!
//! - [`agent`]: a `disco-agent` process (config file, log, signals; killed on drop) and
//!   where its binary is.
//! - [`browser`]: a headless Chromium driven over WebDriver by chromedriver (a small
//!   WebDriver client of its own); both killed on drop.
//! - [`config`]: an agent's config file: the top level, `[etcd]`, and `[[target]]`
//!   sections for template, HAProxy and nginx targets.
//! - [`state`]: the routing state in etcd: keys, seeding apps, reading routes and
//!   canary records; agents' published statuses and waiting for them.
//! - [`proxy`]: a real HAProxy or nginx driven by an agent's target.
//! - [`webhook`]: a webhook receiver that records what is POSTed and answers as told.
//! - [`dashboard`]: a `discoctl dashboard` process on a free loopback port.
#![forbid(unsafe_code)]

pub mod agent;
pub mod browser;
pub mod config;
pub mod dashboard;
pub mod proxy;
pub mod state;
pub mod webhook;

pub use agent::{agent_binary, Agent};
pub use browser::Browser;
pub use config::{AgentConfig, TargetConfig};
pub use dashboard::Dashboard;
pub use proxy::Proxy;
pub use state::*;
pub use webhook::Webhook;
