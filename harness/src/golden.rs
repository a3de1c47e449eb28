//! Golden files: a test compares what it produced with a file checked in beside it, and
//! `UPDATE_GOLDEN=1` rewrites the files instead (review the diff before committing).
//! The one mechanism for the renderers' fixtures and the generated completions and man
//! pages.

use std::path::Path;

/// The environment variable that, set to `1`, rewrites golden files instead of
/// comparing with them.
pub const UPDATE: &str = "UPDATE_GOLDEN";

/// Whether this run rewrites golden files.
pub fn updating() -> bool {
    std::env::var_os(UPDATE).is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file `path`, or writes it there (creating its
/// directory) under `UPDATE_GOLDEN=1`. Panics on a difference, naming the first line
/// that differs.
pub fn check(path: &Path, actual: impl AsRef<[u8]>) {
    let actual = actual.as_ref();
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with {UPDATE}=1 to create it)", path.display()));
    if expected != actual {
        let (expected, actual) = (
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual),
        );
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()))
            + 1;
        panic!(
            "{} differs, first at line {line} ({UPDATE}=1 rewrites it; review the diff):\n{actual}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_names_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.txt");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        check(&path, "a\nb\nc\n");
        let err = std::panic::catch_unwind(|| check(&path, "a\nx\nc\n")).unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert!(message.contains("first at line 2"), "{message}");
    }
}
