//! Where a canary's events go: `-o json` one JSON object per line; otherwise one line
//! per event for people, and a progress line during each observation: rewritten in
//! place every second on a terminal, printed every 5 seconds when stdout is not a
//! terminal (CI logs).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

use super::event::{Event, Line};
use super::hooks::Notifier;
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
    /// `--notify`: where every event but observations is sent too.
    notifier: Option<Notifier>,
}

impl Events {
    pub fn new(app: &str, output: Output) -> Events {
        Events {
            app: app.to_string(),
            output,
            tty: std::io::stdout().is_terminal(),
            line_open: false,
            last_progress: None,
            notifier: None,
        }
    }

    /// Sends every event from now on (observations left out) to `notifier` too.
    pub fn notify_to(&mut self, notifier: Option<Notifier>) {
        self.notifier = notifier;
    }

    /// Waits (bounded) for the notifications still queued; the end of a canary.
    pub async fn drain(&mut self) {
        if let Some(notifier) = self.notifier.take() {
            notifier.drain().await;
        }
    }

    /// Prints `event`: its JSON line with `-o json`, else its text line.
    pub fn emit(&mut self, event: Event) {
        let line = Line::now(&self.app, &event);
        if let Some(notifier) = &self.notifier {
            if !matches!(event, Event::Observation { .. }) {
                notifier.send(line.json());
            }
        }
        let mut out = std::io::stdout().lock();
        match self.output {
            Output::Json => {
                let _ = writeln!(out, "{}", line.json());
            }
            Output::Table => {
                if self.line_open {
                    let _ = write!(out, "\r\x1b[2K");
                    self.line_open = false;
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = out.flush();
        self.last_progress = None;
    }

    /// Shows progress (an `observation` event), at most as often as the output allows:
    /// in place on a terminal, else as [`Events::emit`].
    pub fn progress(&mut self, event: Event) {
        let every = match (self.output, self.tty) {
            (Output::Table, true) => TTY_EVERY,
            _ => PLAIN_EVERY,
        };
        if self.last_progress.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        match (self.output, self.tty) {
            (Output::Table, true) => {
                let line = Line::now(&self.app, &event);
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K{line}");
                let _ = out.flush();
                self.line_open = true;
            }
            _ => self.emit(event),
        }
        self.last_progress = Some(Instant::now());
    }
}
