//! The page's buttons: pause, resume, abort, promote, rollback. Each calls the very
//! function its discoctl verb calls, with the actor `dashboard:<name>`, so that it is
//! the same transaction and the same audit record as on the command line; its report
//! goes to the dashboard's stdout (one JSON line), its error back to the page.

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::canary;
use crate::cmd::{promote, rollback};
use crate::commit::WriteOpts;
use crate::context::Ctx;
use crate::exit::{self, Failure};

/// Longest wait for a canary to roll back after `abort`, and for the agents to apply a
/// promote or rollback (as the verbs' own defaults).
const ABORT_TIMEOUT: Duration = Duration::from_secs(90);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The lock's lease when `abort` rolls back a canary nobody runs (`abort --lock-ttl`).
const ABORT_LOCK_TTL: Duration = Duration::from_secs(10);

/// What the page may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Pause,
    Resume,
    Abort,
    Promote,
    Rollback,
}

impl Verb {
    pub fn parse(name: &str) -> Option<Verb> {
        Some(match name {
            "pause" => Verb::Pause,
            "resume" => Verb::Resume,
            "abort" => Verb::Abort,
            "promote" => Verb::Promote,
            "rollback" => Verb::Rollback,
            _ => return None,
        })
    }
}

/// The request's body (JSON, every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// Why, for the record (pause, abort, promote, rollback).
    pub reason: Option<String>,
    /// promote: the version to flip slots to.
    pub version: Option<String>,
    /// promote: how many slots (default 1).
    pub count: Option<u32>,
    /// promote: every slot not yet on the version.
    #[serde(default)]
    pub all: bool,
    /// rollback: every slot to this version instead of undoing the newest rollout.
    pub to: Option<String>,
}

/// Runs `verb` on `app` as `ctx.actor`.
pub async fn run(ctx: &Ctx, app: &str, verb: Verb, body: Body) -> exit::Result {
    crate::cmd::app_name(app).map_err(exit::usage)?;
    let write = WriteOpts {
        wait: true,
        no_wait: false,
        timeout: WRITE_TIMEOUT,
        reason: body.reason.clone(),
        allow_vanished: false,
    };
    match verb {
        Verb::Pause => canary::control::pause(ctx, app, body.reason).await,
        Verb::Resume => canary::control::resume(ctx, app).await,
        Verb::Abort => {
            canary::control::abort(ctx, app, body.reason, ABORT_TIMEOUT, ABORT_LOCK_TTL).await
        }
        Verb::Promote => {
            let version = body
                .version
                .ok_or_else(|| exit::usage("promote: which version? (\"version\")"))?;
            crate::cmd::version_name(&version).map_err(exit::usage)?;
            let count = body.count.unwrap_or(1);
            if count == 0 {
                return Err(exit::usage("promote: count must be at least 1"));
            }
            let args = promote::PromoteArgs {
                app: app.to_string(),
                version,
                count,
                all: body.all,
                write,
            };
            promote::run(ctx, args).await
        }
        Verb::Rollback => {
            if let Some(to) = &body.to {
                crate::cmd::version_name(to).map_err(exit::usage)?;
            }
            let args = rollback::RollbackArgs {
                app: app.to_string(),
                to: body.to,
                write,
            };
            rollback::run(ctx, args).await
        }
    }
}

/// The HTTP status that says what the exit code says.
pub fn status(failure: &Failure) -> StatusCode {
    match failure.code {
        exit::USAGE => StatusCode::BAD_REQUEST,
        exit::CONFLICT | exit::PRECONDITION => StatusCode::CONFLICT,
        exit::TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        exit::OUTCOME_UNKNOWN => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_exit_codes_map_to_the_page() {
        for name in ["pause", "resume", "abort", "promote", "rollback"] {
            assert!(Verb::parse(name).is_some(), "{name}");
        }
        assert_eq!(Verb::parse("switch"), None);
        assert_eq!(status(&exit::precondition("x")), StatusCode::CONFLICT);
        assert_eq!(status(&exit::usage("x")), StatusCode::BAD_REQUEST);
        assert_eq!(status(&exit::timeout("x")), StatusCode::GATEWAY_TIMEOUT);
        let body: Body = serde_json::from_str(r#"{"version":"v2","count":2}"#).unwrap();
        assert_eq!((body.version.as_deref(), body.count), (Some("v2"), Some(2)));
        assert!(serde_json::from_str::<Body>(r#"{"verison":"v2"}"#).is_err());
    }
}
