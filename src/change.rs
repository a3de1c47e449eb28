//! A change to the routing state as one etcd transaction: it compares every key it read
//! (by mod revision, or absence), writes the new values and the audit record together,
//! and fails as a whole on a concurrent change. Nothing is ever half-written.

use crate::keys::{Key, Keyspace};
use crate::model::HistoryRecord;
use crate::store::{Compare, CompareOp, Kv, Store, StoreError, Txn, TxnOp};

/// Why a change was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A key the change read was modified in the meantime; nothing was written.
    #[error("conflict: {0} changed since it was read; nothing was written, run the command again")]
    Conflict(String),
    /// etcd could not be reached or refused the transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The compares and writes of one transaction.
#[derive(Debug, Default, Clone)]
pub struct ChangeSet {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    guarded: Vec<String>,
    recorded_seq: Option<u64>,
}

impl ChangeSet {
    /// Requires `key` to be as it was read: same mod revision, or still absent.
    pub fn expect(&mut self, key: &str, read: Option<&Kv>) -> &mut Self {
        self.compares.push(match read {
            Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        });
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
        self.ops.push(TxnOp::put(key, value, None));
        self
    }

    /// Writes `key` under `lease`: it disappears when the lease expires or is revoked.
    pub fn put_leased(&mut self, key: &str, value: impl Into<Vec<u8>>, lease: i64) -> &mut Self {
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
        self.recorded_seq = Some(seq);
        let key = keyspace.key(&Key::History {
            app: app.to_string(),
            seq,
        });
        let json = serde_json::to_vec(&record).expect("history records serialize");
        self.expect(&key, None).put(&key, json);
        Ok(self)
    }

    /// The sequence number [`ChangeSet::record`] gave the audit record, if one was added.
    pub fn recorded_seq(&self) -> Option<u64> {
        self.recorded_seq
    }

    /// Commits the change; returns the revision it was written at.
    pub async fn commit(&self, store: &Store) -> Result<i64, CommitError> {
        let txn = Txn::new()
            .when(self.compares.clone())
            .and_then(self.ops.clone());
        let resp = store.txn(txn).await?;
        if !resp.succeeded() {
            return Err(CommitError::Conflict(self.guarded.join(", ")));
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }
}
