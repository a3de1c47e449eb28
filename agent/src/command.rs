//! External commands as data: a program and its arguments, run without a shell, always
//! with a timeout; a failure carries the command's stderr.

use std::time::Duration;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program}: could not start: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("{program}: timed out after {timeout:?} (killed)")]
    Timeout { program: String, timeout: Duration },
    #[error("{program}: exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// Runs `argv` (program first), replacing `{staged}` with `staged`, and waits at most
/// `timeout`. Returns stdout.
pub async fn run(
    argv: &[String],
    staged: Option<&str>,
    timeout: Duration,
) -> Result<String, CommandError> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| match staged {
            Some(path) => a.replace("{staged}", path),
            None => a.clone(),
        })
        .collect();
    let program = args[0].clone();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&args[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(CommandError::Spawn { program, error }),
        Err(_) => return Err(CommandError::Timeout { program, timeout }),
    };
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        if stderr.len() > 2000 {
            stderr.truncate(2000);
            stderr.push('…');
        }
        return Err(CommandError::Failed {
            program,
            status: output.status,
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn no_shell_stderr_in_errors_and_timeouts() {
        // Shell syntax is passed as a plain argument, never interpreted.
        let out = run(
            &argv(&["echo", "$(id);", "{staged}"]),
            Some("/tmp/x"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "$(id); /tmp/x\n");
        let err = run(
            &argv(&["ls", "/nonexistent-disco"]),
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
        let err = run(&argv(&["sleep", "5"]), None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        let err = run(
            &argv(&["/nonexistent/program"]),
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err}");
    }
}
