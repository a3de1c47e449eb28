//! The job confd-compare gives disco-agent (and confd), which agent-latency's
//! `template-check` target runs too: one `server <name> <addr> check` line per routed
//! endpoint, a check command on the staged file, and a reload command that appends a
//! newline to a marker file (a touch that also counts reloads).

use std::path::Path;

/// The template (MiniJinja; context in src/render/template.rs).
pub const TEMPLATE: &str = "\
{% for name, app in apps|items %}
{% for s in app.routed %}
server {{ name }}-{{ s.instance }} {{ s.address }} check
{% endfor %}
{% endfor %}
";

/// The reload command's shell text: appends a newline to `marker`.
pub fn reload_command(marker: &Path) -> String {
    format!("echo >> {}", marker.display())
}

/// The agent's `[[target]]` lines: `TEMPLATE` (at `template`) rendered to `out`, checked
/// with `grep -q server` and reloaded with [`reload_command`], both through `/bin/sh -c`.
pub fn target(out: &Path, template: &Path, marker: &Path) -> String {
    format!(
        "kind = \"template\"\npath = \"{}\"\ntemplate = \"{}\"\ncheck = {:?}\nreload = {:?}\n",
        out.display(),
        template.display(),
        ["/bin/sh", "-c", "grep -q server {staged}"],
        ["/bin/sh", "-c", reload_command(marker).as_str()],
    )
}
