//! A benchmark's starting routing state: policies, endpoints and routes, their keys
//! built by disco's `Keyspace`, written in transactions before anything is measured.

use std::collections::BTreeMap;

use disco::store::{Store, Txn, TxnOp};
use disco::{Key, Keyspace};

/// etcd's default limit on the operations of one transaction.
const MAX_TXN_OPS: usize = 128;

/// Puts collected by key, then written by [`Seed::write`]. A key put twice keeps the
/// later value, as two puts would (etcd refuses a key twice in one transaction).
pub struct Seed<'a> {
    ks: &'a Keyspace,
    puts: BTreeMap<String, Vec<u8>>,
}

impl<'a> Seed<'a> {
    /// Nothing yet, keys under `ks`.
    pub fn new(ks: &'a Keyspace) -> Seed<'a> {
        Seed {
            ks,
            puts: BTreeMap::new(),
        }
    }

    /// `app`'s policy (JSON).
    pub fn policy(&mut self, app: &str, json: impl Into<Vec<u8>>) -> &mut Self {
        let key = self.ks.key(&Key::Policy { app: app.into() });
        self.put(key, json)
    }

    /// An endpoint of `app`'s slot `instance` in `version` (JSON).
    pub fn endpoint(
        &mut self,
        app: &str,
        instance: &str,
        version: &str,
        json: impl Into<Vec<u8>>,
    ) -> &mut Self {
        let key = self.ks.key(&Key::Endpoint {
            app: app.into(),
            instance: instance.into(),
            version: version.into(),
        });
        self.put(key, json)
    }

    /// `app`'s slot `instance` routed to `version`.
    pub fn route(&mut self, app: &str, instance: &str, version: &str) -> &mut Self {
        let key = self.ks.key(&Key::Route {
            app: app.into(),
            instance: instance.into(),
        });
        self.put(key, version)
    }

    /// `app`'s audit record number `seq` (JSON).
    pub fn history(&mut self, app: &str, seq: u64, json: impl Into<Vec<u8>>) -> &mut Self {
        let key = self.ks.key(&Key::History {
            app: app.into(),
            seq,
        });
        self.put(key, json)
    }

    /// Agent `agent`'s traffic statistics of `app` (JSON).
    pub fn stats(&mut self, app: &str, agent: &str, json: impl Into<Vec<u8>>) -> &mut Self {
        let key = self.ks.key(&Key::Stats {
            app: app.into(),
            agent: agent.into(),
        });
        self.put(key, json)
    }

    fn put(&mut self, key: String, value: impl Into<Vec<u8>>) -> &mut Self {
        self.puts.insert(key, value.into());
        self
    }

    /// Writes the puts in key order, in transactions of at most 128 operations (etcd's
    /// default limit); returns the revision of the last one.
    pub async fn write(&self, store: &Store) -> i64 {
        let ops: Vec<TxnOp> = self
            .puts
            .iter()
            .map(|(key, value)| TxnOp::put(key.as_str(), value.as_slice(), None))
            .collect();
        let mut revision = 0;
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let resp = store
                .txn(Txn::new().and_then(chunk.to_vec()))
                .await
                .expect("writing the benchmark's seed");
            revision = resp.header().map(|h| h.revision()).unwrap_or(revision);
        }
        revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_put_twice_keeps_the_later_value() {
        let ks = Keyspace::default();
        let mut seed = Seed::new(&ks);
        seed.route("app1", "instance1", "v1")
            .route("app1", "instance1", "v2")
            .route("app1", "instance2", "v1");
        let route1 = ks.key(&Key::Route {
            app: "app1".into(),
            instance: "instance1".into(),
        });
        assert_eq!(seed.puts.len(), 2);
        assert_eq!(seed.puts[&route1], b"v2");
    }
}
