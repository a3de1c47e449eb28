//! A change to the routing state as one etcd transaction: it compares every key it read
//! (by mod revision, or absence), writes the new values and the audit record together,
//! and fails as a whole on a concurrent change. Nothing is ever half-written.
//!
//! Nor is anything reported wrongly. When etcd fails after the transaction may have
//! reached it (a leader lost mid-request, a reply that never came), the outcome is
//! found out rather than guessed: one of the change's writes is its *witness* (the
//! audit record, which carries a unique id, or a value this change alone writes), and
//! a linearizable read of it tells committed from not. Not committed: the transaction
//! is sent again; its compares make sure that it and the first attempt, if that is
//! still in flight, never both apply. Only when etcd cannot answer is the outcome
//! reported as unknown.

use crate::keys::{Key, Keyspace};
use crate::model::HistoryRecord;
use crate::store::{Compare, CompareOp, Kv, Store, StoreError, Txn, TxnOp};

/// Why a change was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A key the change read was modified in the meantime; nothing was written.
    #[error("conflict: {0} changed since it was read; nothing was written, run the command again")]
    Conflict(String),
    /// The transaction may or may not have been applied, and etcd could not be asked.
    #[error("etcd did not confirm whether the change was committed: {cause}; {check}")]
    OutcomeUnknown {
        /// What failed, in a few words.
        cause: String,
        /// What the operator can look at to find out.
        check: String,
    },
    /// etcd could not be reached or refused the transaction; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A write of the change that proves, when read back, that the change was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Witness {
    key: String,
    value: Vec<u8>,
    /// The lease the value is written under (0: none): a lease id is unique.
    lease: i64,
    /// The mod revision the key was required to have (0: absent).
    expected: i64,
}

/// A random id for one change, e.g. `3f9a0c...`: 128 bits from the process's hasher
/// keys (seeded by the OS), the clock and the process id.
pub fn change_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u32(std::process::id());
    b.write_u64(a.finish());
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// The compares and writes of one transaction.
#[derive(Debug, Default, Clone)]
pub struct ChangeSet {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    guarded: Vec<String>,
    recorded_seq: Option<u64>,
    /// Key -> the mod revision `expect` requires (0: absent).
    expected: std::collections::BTreeMap<String, i64>,
    /// The change's writes that may serve as its witness, in order.
    writes: Vec<Witness>,
    /// The audit record's key, the preferred witness.
    record_key: Option<String>,
}

impl ChangeSet {
    /// Requires `key` to be as it was read: same mod revision, or still absent.
    pub fn expect(&mut self, key: &str, read: Option<&Kv>) -> &mut Self {
        self.compares.push(match read {
            Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        });
        self.expected
            .insert(key.to_string(), read.map_or(0, |kv| kv.mod_revision));
        self.guarded.push(key.to_string());
        self
    }

    /// Requires that no key under `prefix` was created or modified after `revision`
    /// (the revision the prefix was read at). With [`ChangeSet::expect`] on every key
    /// read, which catches deletions, the whole prefix must be as it was read: a key
    /// added since, e.g. a new slot, is a conflict too.
    pub fn expect_prefix_unchanged_since(&mut self, prefix: &str, revision: i64) -> &mut Self {
        self.compares
            .push(Compare::mod_revision(prefix, CompareOp::Less, revision + 1).with_prefix());
        self.guarded.push(format!("{prefix}*"));
        self
    }

    /// Writes `key`.
    pub fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        let value = value.into();
        self.note_write(key, &value, 0);
        self.ops.push(TxnOp::put(key, value, None));
        self
    }

    fn note_write(&mut self, key: &str, value: &[u8], lease: i64) {
        self.writes.push(Witness {
            key: key.to_string(),
            value: value.to_vec(),
            lease,
            expected: 0,
        });
    }

    /// Writes `key` under `lease`: it disappears when the lease expires or is revoked.
    pub fn put_leased(&mut self, key: &str, value: impl Into<Vec<u8>>, lease: i64) -> &mut Self {
        let value = value.into();
        self.note_write(key, &value, lease);
        let options = etcd_client::PutOptions::new().with_lease(lease);
        self.ops.push(TxnOp::put(key, value, Some(options)));
        self
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &str) -> &mut Self {
        self.ops.push(TxnOp::delete(key, None));
        self
    }

    /// Adds the audit record for `app` under the next free sequence number, which
    /// must still be free at commit time.
    pub async fn record(
        &mut self,
        store: &Store,
        keyspace: &Keyspace,
        app: &str,
        mut record: HistoryRecord,
    ) -> Result<&mut Self, StoreError> {
        let last = store.last_key(&keyspace.history(app)).await?;
        let seq = match last.map(|kv| keyspace.parse(&kv.key)) {
            Some(Ok(Key::History { seq, .. })) => seq + 1,
            _ => 1,
        };
        record.seq = seq;
        record.id = Some(change_id());
        self.recorded_seq = Some(seq);
        let key = keyspace.key(&Key::History {
            app: app.to_string(),
            seq,
        });
        let json = serde_json::to_vec(&record).expect("history records serialize");
        self.expect(&key, None).put(&key, json);
        self.record_key = Some(key);
        Ok(self)
    }

    /// The sequence number [`ChangeSet::record`] gave the audit record, if one was added.
    pub fn recorded_seq(&self) -> Option<u64> {
        self.recorded_seq
    }

    /// The write that proves this change committed: the audit record if there is one,
    /// else a guarded write whose value or lease only this change can have put there.
    fn witness(&self) -> Option<Witness> {
        let guarded = |w: &Witness| {
            self.expected.get(&w.key).map(|&expected| Witness {
                expected,
                ..w.clone()
            })
        };
        if let Some(key) = &self.record_key {
            return self.writes.iter().find(|w| &w.key == key).and_then(guarded);
        }
        self.writes.iter().find_map(guarded)
    }

    /// Reads the witness (linearizably): the revision the change was committed at, or
    /// None if it was not (yet).
    async fn find(&self, store: &Store, witness: &Witness) -> Result<Option<i64>, StoreError> {
        let (_, kv) = store.get(&witness.key).await?;
        Ok(kv.and_then(|kv| {
            let ours = kv.value == witness.value
                && kv.lease == witness.lease
                && kv.mod_revision != witness.expected;
            ours.then_some(kv.mod_revision)
        }))
    }

    /// Commits the change; returns the revision it was written at. When the outcome of
    /// a send is unknown, finds it out (see the module doc); [`CommitError::OutcomeUnknown`]
    /// only when etcd cannot tell.
    pub async fn commit(&self, store: &Store) -> Result<i64, CommitError> {
        let txn = Txn::new()
            .when(self.compares.clone())
            .and_then(self.ops.clone());
        let witness = self.witness();
        let check = match (&self.record_key, &witness) {
            (Some(key), _) => format!("the change was committed if {key} exists; look at `discoctl history` and `discoctl status` before running it again"),
            (None, Some(w)) => format!("the change was committed if {} holds its new value; look at `discoctl status` before running it again", w.key),
            (None, None) => "look at `discoctl status` before running it again".to_string(),
        };
        let unknown = |cause: String| CommitError::OutcomeUnknown {
            cause,
            check: check.clone(),
        };
        // Bounds finding out and sending again, beyond the first attempt.
        let deadline = tokio::time::Instant::now() + store.config().request_timeout * 2;
        let mut resent = false;
        loop {
            let cause = match store.txn(txn.clone()).await {
                Ok(resp) if resp.succeeded() => {
                    return Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
                }
                Ok(_) => {
                    // After a resend (only ever with a witness), the conflict may be with
                    // the first attempt.
                    if let (true, Some(w)) = (resent, &witness) {
                        match self.find(store, w).await {
                            Ok(Some(revision)) => return Ok(revision),
                            Ok(None) => {}
                            Err(e) => return Err(unknown(e.to_string())),
                        }
                    }
                    return Err(CommitError::Conflict(self.guarded.join(", ")));
                }
                Err(StoreError::OutcomeUnknown { cause, .. }) => cause,
                // Not sent; but an earlier attempt may still be in flight.
                Err(e) if resent => return Err(unknown(e.to_string())),
                Err(e) => return Err(e.into()),
            };
            let Some(w) = &witness else {
                return Err(unknown(cause));
            };
            match self.find(store, w).await {
                Ok(Some(revision)) => {
                    tracing::info!(key = %w.key, revision, "the transaction's reply was lost, but it was committed");
                    return Ok(revision);
                }
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(key = %w.key, %cause, "the transaction was not committed; sending it again");
                    resent = true;
                }
                Ok(None) => return Err(unknown(cause)),
                Err(e) => return Err(unknown(format!("{cause}; then reading {}: {e}", w.key))),
            }
        }
    }
}
