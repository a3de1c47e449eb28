//! SIGINT/SIGTERM during a canary: the first one asks it to roll back; a second one
//! exits at once, leaving the canary to `--resume` (its lock expires with the lease).

use tokio::sync::watch;

/// The signals of this process, as the canary sees them.
#[derive(Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM.
    pub fn install(app: &str) -> Interrupt {
        let (tx, rx) = watch::channel(None);
        let app = app.to_string();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let first = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let _ = tx.send(Some(first));
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            eprintln!(
                "discoctl: second signal: exiting without rolling back; the canary stays recorded, take it over with `discoctl canary {app} --resume` or roll it back with `discoctl abort {app}`"
            );
            std::process::exit(130);
        });
        Interrupt { rx }
    }

    /// Resolves with the signal's name once one arrived.
    pub async fn fired(&self) -> &'static str {
        let mut rx = self.rx.clone();
        let name = match rx.wait_for(Option::is_some).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        match name {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}
