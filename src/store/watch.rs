//! The watch of a prefix: every change in revision order, resumed after disconnects,
//! and a re-read of the whole prefix when the history it needs was compacted away.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::client::Store;
use crate::snapshot::Change;

/// What a watch delivers, in revision order. Nothing is skipped silently: either every
/// change arrives as `Changes`, or a `Resync` replaces the whole state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Changes up to and including `revision`.
    Changes { revision: i64, changes: Vec<Change> },
    /// The history needed to resume was compacted away: this is the whole prefix at
    /// `revision`, and replaces all earlier state.
    Resync {
        revision: i64,
        kvs: Vec<(String, Vec<u8>)>,
        reason: String,
    },
    /// The whole prefix at `revision`, read before watching (a watch started from
    /// revision 0); changes follow from `revision + 1`.
    Initial {
        revision: i64,
        kvs: Vec<(String, Vec<u8>)>,
    },
    /// The watch lost its connection (or, before [`WatchUpdate::Initial`], etcd did not
    /// answer the first read) and is retrying; updates resume after it.
    Disconnected { error: String },
    /// The watch is established: etcd answers. Sent every time the watch (re)opens.
    Live,
}

impl Store {
    /// Watches every key under `prefix`, starting at `start_revision` (normally the
    /// revision of the last read + 1). The watch runs until the receiver is dropped.
    ///
    /// With `start_revision` 0 the watch is opened at etcd's next revision, then the
    /// prefix is read and delivered as [`WatchUpdate::Initial`] (retried with backoff, a
    /// [`WatchUpdate::Disconnected`] per failed attempt), and the changes after that
    /// read follow: one stream for the initial state, the changes and the
    /// reconnections, with no gap and no event delivered twice.
    pub fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
        options: WatchSettings,
    ) -> mpsc::Receiver<WatchUpdate> {
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { store.run_watch(prefix, start_revision, options, tx).await });
        rx
    }

    async fn run_watch(
        self,
        prefix: String,
        start_revision: i64,
        settings: WatchSettings,
        tx: mpsc::Sender<WatchUpdate>,
    ) {
        let mut next = start_revision;
        let mut backoff = settings.min_backoff;
        loop {
            if tx.is_closed() {
                return;
            }
            let error = match self.watch_once(&prefix, &mut next, &settings, &tx).await {
                WatchEnd::ReceiverGone => return,
                WatchEnd::Reconnect { error, healthy } => {
                    if healthy {
                        backoff = settings.min_backoff;
                    }
                    error
                }
            };
            tracing::warn!(%error, next_revision = next, "etcd watch lost; reconnecting");
            if tx.send(WatchUpdate::Disconnected { error }).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(settings.max_backoff);
        }
    }

    async fn watch_once(
        &self,
        prefix: &str,
        next: &mut i64,
        settings: &WatchSettings,
        tx: &mpsc::Sender<WatchUpdate>,
    ) -> WatchEnd {
        let (client, generation, endpoint) = match self.client().await {
            Ok(c) => c,
            Err((e, generation, endpoint)) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: {e}"),
                    healthy: false,
                };
            }
        };
        // prev_kv: a delete carries the lease the key was under (expired or explicit?).
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(*next)
            .with_progress_notify()
            .with_prev_key();
        let mut c = client;
        let opened = tokio::time::timeout(
            self.config().request_timeout,
            c.watch(prefix, Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: {e}"),
                    healthy: false,
                };
            }
            Err(_) => {
                self.failed(generation).await;
                return WatchEnd::Reconnect {
                    error: format!("{endpoint}: opening the watch timed out"),
                    healthy: false,
                };
            }
        };
        // Without a start revision the watch starts at etcd's next revision, and then the
        // prefix is read: events at or below the read's revision are in it. (The other
        // order, a read and then a watch from the revision after it, makes a watch that
        // starts in the past whenever anything was written in between, and etcd sends
        // such a watch its events only on its next sync, up to 100 ms later.)
        let mut in_initial = 0;
        if *next == 0 {
            match tokio::time::timeout(self.config().request_timeout, stream.message()).await {
                Ok(Ok(Some(resp))) if resp.created() => {}
                Ok(Ok(Some(_))) => {
                    return WatchEnd::Reconnect {
                        error: format!("{endpoint}: the watch answered before it was created"),
                        healthy: false,
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    self.failed(generation).await;
                    return WatchEnd::Reconnect {
                        error: format!("{endpoint}: the watch was not created"),
                        healthy: false,
                    };
                }
            }
            match self.get_prefix(prefix, None).await {
                Ok((revision, kvs)) => {
                    let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    if tx
                        .send(WatchUpdate::Initial { revision, kvs })
                        .await
                        .is_err()
                    {
                        return WatchEnd::ReceiverGone;
                    }
                    *next = revision + 1;
                    in_initial = revision;
                }
                Err(e) => {
                    return WatchEnd::Reconnect {
                        error: e.to_string(),
                        healthy: false,
                    }
                }
            }
        }
        if tx.send(WatchUpdate::Live).await.is_err() {
            return WatchEnd::ReceiverGone;
        }
        let mut ticker = tokio::time::interval(settings.progress_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        let mut delivered = false;
        loop {
            tokio::select! {
                message = stream.message() => {
                    let resp = match message {
                        Ok(Some(resp)) => resp,
                        Ok(None) => {
                            self.failed(generation).await;
                            return WatchEnd::Reconnect { error: format!("{endpoint}: watch stream closed"), healthy: delivered };
                        }
                        Err(e) => {
                            self.failed(generation).await;
                            return WatchEnd::Reconnect { error: format!("{endpoint}: {e}"), healthy: delivered };
                        }
                    };
                    last_heard = tokio::time::Instant::now();
                    if resp.compact_revision() > 0 {
                        let reason = format!(
                            "revision {} was compacted (oldest kept: {}); re-reading {prefix}",
                            *next, resp.compact_revision()
                        );
                        match self.get_prefix(prefix, None).await {
                            Ok((revision, kvs)) => {
                                let kvs = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                                if tx.send(WatchUpdate::Resync { revision, kvs, reason }).await.is_err() {
                                    return WatchEnd::ReceiverGone;
                                }
                                *next = revision + 1;
                                return WatchEnd::Reconnect { error: "resumed after compaction".into(), healthy: true };
                            }
                            Err(e) => return WatchEnd::Reconnect { error: format!("re-read after compaction: {e}"), healthy: false },
                        }
                    }
                    if resp.canceled() {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect { error: format!("{endpoint}: watch canceled: {}", resp.cancel_reason()), healthy: false };
                    }
                    // Responses without events (created, progress) only prove the stream is
                    // alive. Their header revision is not used to move the resume point:
                    // etcd before 3.4.24/3.5.8 can report progress past events it has not
                    // sent yet (etcd-io/etcd#15220), and trusting it would skip them.
                    if resp.events().is_empty() {
                        continue;
                    }
                    let mut revision = *next - 1;
                    let changes: Vec<Change> = resp.events().iter().filter_map(|event| {
                        let kv = event.kv().filter(|kv| kv.mod_revision() > in_initial)?;
                        revision = revision.max(kv.mod_revision());
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        Some(match event.event_type() {
                            EventType::Put => Change::Put { key, value: kv.value().to_vec() },
                            EventType::Delete => Change::Delete { key, lease: event.prev_kv().map_or(0, |kv| kv.lease()) },
                        })
                    }).collect();
                    if changes.is_empty() {
                        continue;
                    }
                    if tx.send(WatchUpdate::Changes { revision, changes }).await.is_err() {
                        return WatchEnd::ReceiverGone;
                    }
                    *next = revision + 1;
                    delivered = true;
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > settings.progress_interval * 3 {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect {
                            error: format!("{endpoint}: no answer to progress requests for {:?}", last_heard.elapsed()),
                            healthy: delivered,
                        };
                    }
                    if let Err(e) = stream.request_progress().await {
                        self.failed(generation).await;
                        return WatchEnd::Reconnect { error: format!("{endpoint}: {e}"), healthy: delivered };
                    }
                }
                _ = tx.closed() => return WatchEnd::ReceiverGone,
            }
        }
    }
}

enum WatchEnd {
    ReceiverGone,
    Reconnect { error: String, healthy: bool },
}

/// Timing of a watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How often to ask etcd for progress; a watch that has not answered for three of
    /// these is reconnected. Default: 2s.
    pub progress_interval: Duration,
    /// First pause before reconnecting. Default: 100ms.
    pub min_backoff: Duration,
    /// Longest pause between reconnects. Default: 5s.
    pub max_backoff: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            progress_interval: Duration::from_secs(2),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}
