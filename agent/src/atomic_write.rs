//! Installing a file atomically: a temp file in the same directory, fsync, rename over
//! the target, fsync the directory. Readers see the old file or the new one, never half.
//!
//! Temp files are named after the file they are for (`.<name>.disco-XXXXXX.tmp`,
//! `.<name>.staged-XXXXXX<.ext>`), so that [`remove_leftovers`] removes what a killed
//! agent left beside *its* files, and nothing of anyone else's.

use std::io::Write;
use std::path::Path;

fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The prefixes of the temp files made for `path`.
fn temp_prefixes(path: &Path) -> [String; 2] {
    let name = file_name(path);
    [format!(".{name}.disco-"), format!(".{name}.staged-")]
}

/// Writes `content` to `path` atomically.
pub fn install(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = dir_of(path);
    let [install_prefix, _] = temp_prefixes(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&install_prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    persist(tmp, path)
}

/// Renames `tmp` (written and synced, in `path`'s directory: a file of [`stage`]) over
/// `path`, with the permissions of the file it replaces, and syncs the directory.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    let dir = dir_of(path);
    // Keep the permissions of the file being replaced (the proxy must still read it).
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let perms = mode.unwrap_or_else(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o644)
    });
    std::fs::set_permissions(tmp.path(), perms)?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `content` to a staging file beside `path` and returns it; the file is removed
/// when the returned handle is dropped.
pub fn stage(path: &Path, content: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = dir_of(path);
    let [_, staged_prefix] = temp_prefixes(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&staged_prefix)
        .suffix(
            &path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default(),
        )
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Removes the temp files that [`install`] and [`stage`] made for `path` and that are
/// still there (their owner was killed before it could remove them); returns them.
/// Only this agent writes beside `path` under these names, and it calls this at start,
/// before it writes anything.
pub fn remove_leftovers(path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let prefixes = temp_prefixes(path);
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir_of(path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disco.cfg");
        install(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        install(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let staged = stage(&path, b"three").unwrap();
        assert_eq!(std::fs::read(staged.path()).unwrap(), b"three");
        assert!(staged.path().to_string_lossy().ends_with(".cfg"));
        let staged_path = staged.path().to_path_buf();
        drop(staged);
        assert!(!staged_path.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn leftovers_of_this_file_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disco.cfg");
        install(&path, b"one").unwrap();
        // What a SIGKILL leaves: NamedTempFile's Drop never ran.
        let staged = stage(&path, b"two")
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let tmp = tempfile::Builder::new()
            .prefix(".disco.cfg.disco-")
            .suffix(".tmp")
            .tempfile_in(dir.path())
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        // Someone else's: another file's temp file, and an unrelated dotfile.
        let other = dir.path().join(".other.cfg.disco-abc123.tmp");
        let unrelated = dir.path().join(".disco.cfg.orig");
        std::fs::write(&other, b"x").unwrap();
        std::fs::write(&unrelated, b"x").unwrap();

        let mut expected = vec![staged, tmp];
        expected.sort();
        assert_eq!(remove_leftovers(&path).unwrap(), expected);
        assert!(path.exists() && other.exists() && unrelated.exists());
        assert_eq!(
            remove_leftovers(&path).unwrap(),
            Vec::<std::path::PathBuf>::new()
        );
    }
}
