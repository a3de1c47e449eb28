//! The one client of HAProxy's sockets: the master CLI (`-S`: `reload`, `show proc`)
//! and a worker's stats socket (Runtime API: `show stat`, `set server`, `add acl`, …),
//! with typed errors.
//!
//! Both are used one command per connection. The master CLI of HAProxy 2.6 keeps a
//! connection open after answering, so the write side is half-closed after the command
//! (reading to the end would hang otherwise); a worker's stats socket answers and closes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A command that could not be run, or that HAProxy refused.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket could not be reached or the exchange broke off.
    #[error("HAProxy socket {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No complete answer in time.
    #[error("HAProxy socket {}: no answer to `{command}` within {timeout:?}", socket.display())]
    Timeout {
        socket: PathBuf,
        command: String,
        timeout: Duration,
    },
    /// HAProxy answered something else than success.
    #[error("HAProxy socket {}: `{command}` refused: {}", socket.display(), answer.trim())]
    Refused {
        socket: PathBuf,
        command: String,
        answer: String,
    },
}

/// Which side of HAProxy a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The master CLI (`haproxy -W -S <socket>`).
    Master,
    /// A worker's stats socket (`stats socket <path> level admin` in `global`).
    Worker,
}

/// Sends one command and returns the whole answer.
pub async fn exchange(
    socket: &Path,
    side: Side,
    command: &str,
    timeout: Duration,
) -> Result<String, CliError> {
    let io = |source| CliError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    let run = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await.map_err(io)?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io)?;
        if side == Side::Master {
            stream.shutdown().await.map_err(io)?;
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.map_err(io)?;
        Ok(answer)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(CliError::Timeout {
            socket: socket.to_path_buf(),
            command: command.to_string(),
            timeout,
        }),
    }
}

/// Sends a Runtime API command that changes something and checks the answer: success is
/// an empty answer or one of `ok` (HAProxy's confirmations, e.g. "New server
/// registered."); anything else is a refusal.
pub async fn change(
    socket: &Path,
    command: &str,
    ok: &[&str],
    timeout: Duration,
) -> Result<(), CliError> {
    let answer = exchange(socket, Side::Worker, command, timeout).await?;
    let trimmed = answer.trim();
    if trimmed.is_empty() || ok.contains(&trimmed) {
        Ok(())
    } else {
        Err(CliError::Refused {
            socket: socket.to_path_buf(),
            command: command.to_string(),
            answer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot unix socket server answering `answer` to whatever it reads.
    async fn serve_once(answer: &'static str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await;
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        (dir, path)
    }

    #[tokio::test]
    async fn success_refusal_and_absence_are_told_apart() {
        let t = Duration::from_secs(2);
        let (_d, s) = serve_once("\n").await;
        change(&s, "set server b/s weight 1", &[], t).await.unwrap();
        let (_d, s) = serve_once("New server registered.\n\n").await;
        change(
            &s,
            "add server b/s 127.0.0.1:1",
            &["New server registered."],
            t,
        )
        .await
        .unwrap();
        let (_d, s) = serve_once("No such server.\n\n").await;
        let e = change(&s, "set server b/x weight 1", &[], t)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CliError::Refused { answer, .. } if answer.contains("No such server")),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("`set server b/x weight 1` refused: No such server."));
        let e = exchange(
            Path::new("/nonexistent/s.sock"),
            Side::Worker,
            "show info",
            t,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CliError::Io { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let _hold = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let e = exchange(&path, Side::Worker, "show info", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, CliError::Timeout { .. }), "{e}");
    }
}
