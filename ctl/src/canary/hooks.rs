//! A canary's webhooks. `--notify URL`: every event (the `-o json` line, observations
//! left out) is POSTed in order from a background task, with a timeout and retries, so
//! that a slow receiver never delays a step or a rollback. `--gate URL`: before each
//! step the canary POSTs the step and the traffic statistics and waits for the answer;
//! anything but a 2xx (after retries on timeouts and refused connections) pauses the
//! canary, with the gate's answer as the reason, until `discoctl resume`.
//!
//! The URLs are not recorded in etcd (they may hold tokens): give them again with
//! `--resume`.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use disco::stats::VersionStats;

/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per notification or gate call (on timeouts, refused connections and, for
/// notifications, non-2xx answers).
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long the end of a canary waits for notifications still queued.
const DRAIN: Duration = Duration::from_secs(15);

/// Checks a webhook URL: `http://host[:port]/path`.
pub fn parse_url(s: &str) -> std::result::Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| "expected an http:// URL (https is not supported: put a local relay in front of the receiver)".to_string())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err("expected http://host[:port]/path".into());
    }
    Ok(s.to_string())
}

/// The HTTP client of the webhooks.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

/// POSTs `body` (JSON) to `url`; `Ok(status, body)` for any answer, `Err` when none
/// came (timeout, refused, reset).
async fn post(client: &reqwest::Client, url: &str, body: &str) -> Answer {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text.chars().take(200).collect()))
}

fn error_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "no answer within {}",
            humantime::format_duration(ATTEMPT_TIMEOUT)
        );
    }
    disco::error_chain(e)
}

/// Sends events to the `--notify` URLs in order, from a background task.
pub struct Notifier {
    queue: mpsc::UnboundedSender<String>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// A notifier posting to `urls`; `None` when there are none.
    pub fn start(urls: Vec<String>) -> Option<Notifier> {
        if urls.is_empty() {
            return None;
        }
        let (queue, mut lines) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let client = client();
            while let Some(line) = lines.recv().await {
                for url in &urls {
                    if let Err(why) = deliver(&client, url, &line).await {
                        eprintln!("warning: notification to {url} dropped: {why}");
                    }
                }
            }
        });
        Some(Notifier { queue, task })
    }

    /// Queues one event's JSON line; never waits.
    pub fn send(&self, line: String) {
        let _ = self.queue.send(line);
    }

    /// Waits (up to 15 s) until the queued notifications went out or were dropped.
    pub async fn drain(self) {
        drop(self.queue);
        let mut task = self.task;
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            task.abort();
            eprintln!(
                "warning: notifications still queued after {} were dropped",
                humantime::format_duration(DRAIN)
            );
        }
    }
}

/// What one POST got: the status and the start of the body, or why there was none.
type Answer = std::result::Result<(u16, String), String>;

fn is_2xx(answer: &Answer) -> bool {
    matches!(answer, Ok((status, _)) if (200..300).contains(status))
}

/// POSTs `body` to `url` up to [`ATTEMPTS`] times, backing off between attempts, while
/// `again` says the answer calls for another; the last answer.
async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    again: impl Fn(&Answer) -> bool,
) -> Answer {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let answer = post(client, url, body).await;
        if attempt == ATTEMPTS || !again(&answer) {
            return answer;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

/// POSTs one notification, retried on any failure. The last failure's text if none
/// was taken.
async fn deliver(client: &reqwest::Client, url: &str, line: &str) -> Result<(), String> {
    let last = match post_with_retries(client, url, line, |a| !is_2xx(a)).await {
        answer if is_2xx(&answer) => return Ok(()),
        Ok((status, body)) => format!("HTTP {status} {body}"),
        Err(e) => e,
    };
    Err(format!("{ATTEMPTS} attempts, the last: {last}"))
}

/// What a gate is asked before a step.
#[derive(Debug, Clone, Serialize)]
pub struct GateRequest<'a> {
    pub app: &'a str,
    pub version: &'a str,
    /// The step about to be applied (from 1), of `of`.
    pub step: usize,
    pub of: usize,
    /// The step in words.
    pub description: String,
    /// Steps passed so far.
    pub passed: usize,
    /// The traffic statistics the LB agents publish, per version, all agents added up:
    /// `total` since they started counting, `window` the last publishing window.
    pub statistics: std::collections::BTreeMap<String, VersionStats>,
    pub at: String,
}

/// The `--gate` URLs.
pub struct Gates {
    urls: Vec<String>,
    client: reqwest::Client,
}

impl Gates {
    pub fn new(urls: Vec<String>) -> Gates {
        Gates {
            urls,
            client: client(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Asks every gate about `request`: `None` when all answered 2xx, else why not
    /// (the first gate that refused, or did not answer after retries).
    pub async fn ask(&self, request: &GateRequest<'_>) -> Option<String> {
        let body = serde_json::to_string(request).expect("a gate request is JSON");
        for url in &self.urls {
            // A refusal is an answer: only a missing answer is asked again.
            let why = match post_with_retries(&self.client, url, &body, Result::is_err).await {
                answer if is_2xx(&answer) => continue,
                Ok((status, answer)) => format!("HTTP {status}{}", quoted(&answer)),
                Err(e) => format!("no answer after {ATTEMPTS} attempts: {e}"),
            };
            return Some(format!(
                "gate {url} did not allow step {}/{}: {why}",
                request.step, request.of
            ));
        }
        None
    }
}

fn quoted(answer: &str) -> String {
    let answer = answer.trim();
    if answer.is_empty() {
        String::new()
    } else {
        format!(" {answer:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert!(parse_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(parse_url("http://gate.internal/ok?step=1").is_ok());
        assert!(parse_url("https://hooks.example/x")
            .unwrap_err()
            .contains("https"));
        assert!(parse_url("http:///path").is_err());
        assert!(parse_url("http://user@host/").is_err());
        assert!(parse_url("ftp://host/").is_err());
    }
}
