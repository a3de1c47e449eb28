//! discoctl's exit codes: stable and documented, because CI jobs branch on them.

/// Success.
pub const OK: i32 = 0;
/// An error not covered below (etcd unreachable, unexpected answer).
pub const ERROR: i32 = 1;
/// Bad command line or bad input (invalid name, address, unknown app); nothing written.
pub const USAGE: i32 = 2;
/// Timed out waiting for agents to apply a change; the agents are named.
pub const TIMEOUT: i32 = 3;
/// A concurrent change touched what this command read; nothing written.
pub const CONFLICT: i32 = 4;
/// A precondition failed (e.g. no endpoint of the version); nothing written.
pub const PRECONDITION: i32 = 5;
/// `canary`: the canary was rolled back (a step failed its analysis, it was aborted or
/// interrupted); the routing is back to the state before it.
pub const ROLLED_BACK: i32 = 6;
/// etcd failed after the change may have reached it, and could not be asked whether it
/// was committed: it may or may not be. Look at `discoctl history` / `status` before
/// running the command again (the message names the key that tells).
pub const OUTCOME_UNKNOWN: i32 = 7;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
    /// Already reported on stdout (`check`): `main` prints nothing more.
    pub quiet: bool,
}

impl Failure {
    pub fn new(code: i32, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
            quiet: false,
        }
    }

    /// Exit with `code`, the command having said everything already.
    pub fn quiet(code: i32) -> Self {
        Failure {
            code,
            error: anyhow::anyhow!("exit code {code}"),
            quiet: true,
        }
    }
}

/// Maps any error to its exit code: typed library errors decide, the rest is `ERROR`.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let plan_error = error.downcast_ref::<disco::plan::PlanError>();
        let code = match error.downcast_ref::<disco::change::CommitError>() {
            Some(disco::change::CommitError::Conflict(_)) => CONFLICT,
            Some(disco::change::CommitError::OutcomeUnknown { .. }) => OUTCOME_UNKNOWN,
            _ if plan_error.is_some_and(|e| e.is_bad_input()) => USAGE,
            _ if plan_error.is_some() => PRECONDITION,
            _ if error.downcast_ref::<disco::validate::Invalid>().is_some() => USAGE,
            _ => ERROR,
        };
        Failure {
            code,
            error,
            quiet: false,
        }
    }
}

/// Shorthand for command results.
pub type Result<T = ()> = std::result::Result<T, Failure>;

/// Fails with `USAGE`.
pub fn usage(msg: impl std::fmt::Display) -> Failure {
    Failure::new(USAGE, anyhow::anyhow!("{msg}"))
}

/// Fails with `PRECONDITION`.
pub fn precondition(msg: impl std::fmt::Display) -> Failure {
    Failure::new(PRECONDITION, anyhow::anyhow!("{msg}"))
}

/// Fails with `TIMEOUT`.
pub fn timeout(msg: impl std::fmt::Display) -> Failure {
    Failure::new(TIMEOUT, anyhow::anyhow!("{msg}"))
}
