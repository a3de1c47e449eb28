//! Shell completions and man pages generated from a binary's clap definition, checked
//! in under `packaging/` and compared in tests, so CI fails when they are stale.
//! Regenerate with `scripts/gen-docs.sh` (`UPDATE_GOLDEN=1 cargo test ... generated`).

use std::path::Path;

/// Compares `content` with the checked-in file `packaging/<relative>`, or rewrites the
/// file under `UPDATE_GOLDEN=1` ([`crate::golden`]).
pub fn check(workspace: &Path, relative: &str, content: &[u8]) {
    crate::golden::check(&workspace.join("packaging").join(relative), content);
}

/// Checks (or regenerates) `bin`'s bash, zsh and fish completions and its man page
/// under `packaging/completions/` and `packaging/man/`.
pub fn check_cli(workspace: &Path, bin: &str, command: clap::Command) {
    for (shell, file) in [
        (
            clap_complete::Shell::Bash,
            format!("completions/{bin}.bash"),
        ),
        (clap_complete::Shell::Zsh, format!("completions/_{bin}")),
        (
            clap_complete::Shell::Fish,
            format!("completions/{bin}.fish"),
        ),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), bin, &mut out);
        check(workspace, &file, &out);
    }
    let mut man = Vec::new();
    clap_mangen::Man::new(command).render(&mut man).unwrap();
    check(workspace, &format!("man/{bin}.1"), &man);
}
