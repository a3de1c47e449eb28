//! What a canary prints as it goes. `-o json`: one JSON object per line, each with
//! `event` (`started`, `step_started`, `applied`, `observation`, `no_data`,
//! `step_passed`, `paused`, `resumed`, `awaiting_confirmation`, `rolled_back`,
//! `completed`), `app` and `at`. Otherwise one line per event for people, and a progress
//! line during each observation: rewritten in place every second on a terminal, printed
//! every 5 seconds when stdout is not a terminal (CI logs).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use disco::stats::Counts;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::context::Output;

/// How often the progress line is printed when stdout is not a terminal, and how often
/// `observation` events are emitted with `-o json`.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How often the progress line is redrawn on a terminal.
const TTY_EVERY: Duration = Duration::from_secs(1);

/// The event printer of one canary.
pub struct Events {
    app: String,
    output: Output,
    tty: bool,
    /// A progress line is on screen without its newline (terminal only).
    line_open: bool,
    last_progress: Option<Instant>,
}

impl Events {
    pub fn new(app: &str, output: Output) -> Events {
        Events {
            app: app.to_string(),
            output,
            tty: std::io::stdout().is_terminal(),
            line_open: false,
            last_progress: None,
        }
    }

    /// Prints `event`: its `fields` (a JSON object) with `-o json`, else `human`.
    pub fn emit(&mut self, event: &str, fields: Value, human: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        match self.output {
            Output::Json => {
                let mut doc = json!({
                    "event": event,
                    "app": self.app,
                    "at": disco::model::now_rfc3339(),
                });
                if let (Some(doc), Value::Object(fields)) = (doc.as_object_mut(), fields) {
                    doc.extend(fields);
                }
                let _ = writeln!(out, "{doc}");
            }
            Output::Table => {
                if self.line_open {
                    let _ = write!(out, "\r\x1b[2K");
                    self.line_open = false;
                }
                let _ = writeln!(out, "{}", human.as_ref());
            }
        }
        let _ = out.flush();
        self.last_progress = None;
    }

    /// Shows progress, at most as often as the output allows: an `observation` event
    /// with `-o json`, else `human` (in place on a terminal).
    pub fn progress(&mut self, fields: Value, human: impl AsRef<str>) {
        let every = match (self.output, self.tty) {
            (Output::Table, true) => TTY_EVERY,
            _ => PLAIN_EVERY,
        };
        if self.last_progress.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        match (self.output, self.tty) {
            (Output::Table, true) => {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K{}", human.as_ref());
                let _ = out.flush();
                self.line_open = true;
            }
            _ => {
                self.emit("observation", fields, human);
            }
        }
        self.last_progress = Some(Instant::now());
    }
}

/// A version's counts for events: requests, 5xx, share, mean and p95 (nginx only).
pub fn counts_json(version: &str, c: &Counts) -> Value {
    json!({
        "version": version,
        "requests": c.requests,
        "errors_5xx": c.errors_5xx,
        "error_rate": c.error_rate(),
        "mean_ms": c.mean_ms(),
        "p95_ms": c.percentile_ms(0.95),
    })
}

/// `0.3% 5xx of 1234 requests, mean 1.2 ms` (or `no requests`).
pub fn counts_text(c: &Counts) -> String {
    let Some(rate) = c.error_rate() else {
        return "no requests".into();
    };
    let mean = c
        .mean_ms()
        .map(|m| format!(", mean {m:.1} ms"))
        .unwrap_or_default();
    format!("{:.1}% 5xx of {} requests{mean}", rate * 100.0, c.requests)
}

/// `1m05s`-style, whole seconds.
pub fn duration_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
