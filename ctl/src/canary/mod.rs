//! The automated canary (`discoctl canary`, and `pause`, `resume`, `abort` from other
//! terminals): steps applied one transaction at a time, observed through the traffic
//! statistics the agents publish, and judged; a failed step rolls everything back. The
//! steps, the record and the analysis are `disco::rollout`; the commands' options are
//! `crate::cmd::canary` and `crate::cmd::control`.
//!
//! # Layout
//!
//! - `start`: refuse or plan, take the lock, run; or take over (`--resume`).
//! - `runner`: the loop from step to step, following the record's state.
//! - `step`: one step's transaction, the wait for the agents, what follows.
//! - `observe`: reading and judging the statistics over a step's `window`.
//! - `window`: the observation window, without IO.
//! - `pause`: waiting while paused, and for the final step's confirmation.
//! - `rollback`: back to the state before the canary.
//! - `control`: `pause`, `resume`, `abort`.
//! - `record`, `lock`, `interrupt`: the record in etcd, the lock, SIGINT/SIGTERM.
//! - `event`: what a canary reports (the `-o json` schema); `output`: printing it.
//! - `hooks`: `--notify` (every event POSTed in the background) and `--gate` (asked
//!   before each step; a refusal pauses the canary).

pub mod control;
mod event;
mod hooks;
mod interrupt;
mod lock;
mod observe;
mod output;
mod pause;
mod record;
mod rollback;
mod runner;
mod start;
mod step;
mod window;

pub use hooks::parse_url;
pub use runner::Hooks;
pub use start::{start, take_over, Settings};
