//! What each target's proxy was *confirmed* to have loaded: the hash of the content of
//! the last reload that was confirmed, per target file, kept beside the snapshot cache.
//!
//! A file on disk is not proof: an agent killed after it renamed a new file into place
//! and before the reload ran leaves a file the proxy never loaded. At start the agent
//! trusts this record instead, so such a file is reloaded (after validation) before
//! its revision is ever published as applied. Written after every confirmed reload or
//! Runtime API change and before the status that reports it; a crash in between costs
//! one extra reload (or Runtime API read).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Target file → hash of the content its proxy confirmed running.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Loaded {
    pub targets: BTreeMap<PathBuf, String>,
    /// HAProxy targets with a runtime socket: the structure of the file the proxy was
    /// confirmed to *load* (a Runtime API change keeps it; only a reload changes it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub structures: BTreeMap<PathBuf, Structure>,
}

/// What only a reload changes in an HAProxy file (see `disco::render::haproxy::structure`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Structure {
    /// The structure hash.
    pub structure: String,
    /// The dark-canary match kinds it renders per app.
    pub kinds: disco::render::haproxy::Keep,
}

/// Where the record of the agent whose snapshot cache is `cache_path` lives:
/// `x.snapshot.json` → `x.snapshot.loaded.json`.
pub fn path_for(cache_path: &Path) -> PathBuf {
    cache_path.with_extension("loaded.json")
}

/// Reads the record; an absent or unreadable one is empty (every target reloads once).
pub fn read(path: &Path) -> Loaded {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable record of loaded configurations; every target reloads once");
            Loaded::default()
        }),
        Err(_) => Loaded::default(),
    }
}

/// Writes the record atomically.
pub fn write(path: &Path, loaded: &Loaded) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(loaded).expect("record serializes");
    crate::atomic_write::install(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unreadable_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("lb1.snapshot.json"));
        assert_eq!(path, dir.path().join("lb1.snapshot.loaded.json"));
        assert_eq!(read(&path), Loaded::default());
        let mut loaded = Loaded::default();
        loaded
            .targets
            .insert(PathBuf::from("/etc/haproxy/disco.cfg"), "abc".into());
        write(&path, &loaded).unwrap();
        assert_eq!(read(&path), loaded);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(read(&path), Loaded::default());
    }
}
