//! Reads, writes, transactions and leases, each one call through the failover client.

use etcd_client::{DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnResponse};

use super::client::{Retry, Store};
use super::error::StoreError;

/// One key/value as read, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The full key.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// The revision of the last write.
    pub mod_revision: i64,
    /// The revision the key was created at.
    pub create_revision: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl From<etcd_client::KeyValue> for Kv {
    fn from(kv: etcd_client::KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Store {
    /// Reads every key under `prefix`, at `revision` (or the latest), in pages, all at
    /// one revision. Returns that revision and the keys in key order.
    pub async fn get_prefix(
        &self,
        prefix: &str,
        revision: Option<i64>,
    ) -> Result<(i64, Vec<Kv>), StoreError> {
        const PAGE: i64 = 1000;
        let end = prefix_end(prefix);
        let mut start = prefix.as_bytes().to_vec();
        let mut at = revision.unwrap_or(0);
        let mut out = Vec::new();
        loop {
            let (key, end_key) = (start.clone(), end.clone());
            let mut resp = self
                .call(Retry::Always, move |mut c| {
                    let (key, end_key) = (key.clone(), end_key.clone());
                    async move {
                        c.get(
                            key,
                            Some(
                                GetOptions::new()
                                    .with_range(end_key)
                                    .with_limit(PAGE)
                                    .with_revision(at),
                            ),
                        )
                        .await
                    }
                })
                .await?;
            if at == 0 {
                at = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            out.extend(resp.take_kvs().into_iter().map(Kv::from));
            match (more, out.last()) {
                (true, Some(last)) => {
                    start = last.key.as_bytes().to_vec();
                    start.push(0);
                }
                _ => return Ok((at, out)),
            }
        }
    }

    /// Reads one key at the latest revision; `None` if it does not exist. Also returns
    /// the store's revision.
    pub async fn get(&self, key: &str) -> Result<(i64, Option<Kv>), StoreError> {
        let k = key.to_string();
        let mut resp = self
            .call(Retry::Always, move |mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kv = resp.take_kvs().into_iter().next().map(Kv::from);
        Ok((revision, kv))
    }

    /// The last key under `prefix` in key order, if any.
    pub async fn last_key(&self, prefix: &str) -> Result<Option<Kv>, StoreError> {
        let end = prefix_end(prefix);
        let start = prefix.to_string();
        let mut resp = self
            .call(Retry::Always, move |mut c| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let options = GetOptions::new()
                        .with_range(end)
                        .with_limit(1)
                        .with_sort(SortTarget::Key, SortOrder::Descend);
                    c.get(start, Some(options)).await
                }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next().map(Kv::from))
    }

    /// Writes `key`, optionally under a lease; returns the revision of the write.
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        lease: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (k, v) = (key.to_string(), value.into());
        let resp = self
            .call(Retry::Always, move |mut c| {
                let (k, v) = (k.clone(), v.clone());
                let options = lease.map(|id| PutOptions::new().with_lease(id));
                async move { c.put(k, v, options).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Deletes `key`; returns the revision after the delete and whether it existed.
    pub async fn delete(&self, key: &str) -> Result<(i64, bool), StoreError> {
        let k = key.to_string();
        let resp = self
            .call(Retry::Always, move |mut c| {
                let k = k.clone();
                async move { c.delete(k, None::<DeleteOptions>).await }
            })
            .await?;
        Ok((
            resp.header().map(|h| h.revision()).unwrap_or(0),
            resp.deleted() > 0,
        ))
    }

    /// Runs a transaction. It is resent to another member only if it cannot have
    /// arrived, so a compare-and-swap is never applied twice.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(Retry::IfNotSent, move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant_lease(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .call(Retry::Always, move |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?;
        Ok(resp.id())
    }

    /// Renews a lease once; returns its remaining TTL in seconds, 0 if it is gone.
    pub async fn keep_alive_once(&self, id: i64) -> Result<i64, StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(resp) => Ok(resp.ttl()),
                None => Ok(0),
            }
        })
        .await
    }

    /// Whether lease `id` still exists (not expired, not revoked).
    pub async fn lease_exists(&self, id: i64) -> Result<bool, StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            c.lease_time_to_live(id, None).await
        })
        .await
        .map(|resp| resp.ttl() > 0)
    }

    /// Revokes a lease, deleting every key under it.
    pub async fn revoke_lease(&self, id: i64) -> Result<(), StoreError> {
        self.call(Retry::Always, move |mut c| async move {
            c.lease_revoke(id).await
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/disco/apps/"), b"/disco/apps0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
