//! A real browser under test: Debian's `chromium`, headless, driven over WebDriver by
//! its `chromedriver` (package `chromium-driver`) on a free loopback port. A small
//! WebDriver client of its own (new session, navigate, find, click, run a script, take
//! a screenshot): the few calls the tests need, over plain HTTP and JSON.
//! chromedriver and every browser process under it are killed on drop, also when the
//! test panics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver call that failed: the command and what the driver said.
#[derive(Debug)]
pub struct WebDriverError {
    pub command: String,
    /// The W3C error code (`no such element`, ...) or `transport`.
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.command, self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// A running chromedriver; it and its browsers are killed on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Browsers first (chromedriver's children), so that none is left orphaned.
        let browsers = disco_harness::process::descendants(self.child.id());
        disco_harness::process::signal(&browsers, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session.
pub struct Browser {
    client: reqwest::Client,
    session: String,
    /// Declared last: dropped after the session's fields.
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    /// Panics (with an install hint) if either is missing.
    pub async fn start(width: u32, height: u32) -> Browser {
        // chromedriver reaches Chromium's DevTools at `localhost`.
        use std::net::ToSocketAddrs;
        assert!(
            ("localhost", 1).to_socket_addrs().is_ok_and(|mut a| a.next().is_some()),
            "`localhost` does not resolve on this machine, and chromedriver connects to Chromium through it: add `127.0.0.1 localhost` to /etc/hosts"
        );
        let chromedriver = disco_harness::program("chromedriver", "chromium-driver");
        let chromium = disco_harness::program("chromium", "chromium");
        let dir = tempfile::Builder::new()
            .prefix("disco-browser-")
            .tempdir()
            .unwrap();
        let port = disco_harness::ports::free_port();
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver {
            child,
            port,
            log,
            dir,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match client.get(&status).send().await {
                Ok(r) => r
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready within 30s; its log: {}",
                std::fs::read_to_string(&driver.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = driver.dir.path().join("profile");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless=new",
                            // As root (containers, CI) Chromium has no sandbox to use.
                            "--no-sandbox",
                            "--disable-dev-shm-usage",
                            "--disable-gpu",
                            "--no-first-run",
                            "--no-default-browser-check",
                            "--disable-extensions",
                            "--hide-scrollbars",
                            format!("--window-size={width},{height}"),
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let mut browser = Browser {
            client,
            session: String::new(),
            driver,
        };
        let created = browser
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "starting Chromium: {e}; chromedriver's log: {}",
                    browser.driver_log()
                )
            });
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// chromedriver's log so far, for failure messages.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver.log).unwrap_or_default()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        let url = format!("http://127.0.0.1:{}{path}", self.driver.port);
        let command = format!("{method} {path}");
        let transport = |e: reqwest::Error| WebDriverError {
            command: command.clone(),
            error: "transport".into(),
            message: disco::error_chain(&e),
        };
        let mut request = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(transport)?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(transport)?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let value = answer["value"].clone();
        if ok {
            return Ok(value);
        }
        Err(WebDriverError {
            command,
            error: value["error"].as_str().unwrap_or("unknown").into(),
            message: value["message"]
                .as_str()
                .map(|m| m.lines().next().unwrap_or("").to_string())
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
        })
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and
    /// returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, WebDriverError> {
        self.call(
            reqwest::Method::POST,
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The text of the first element matching the CSS selector `css`, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        let value = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("reading {css}: {e}"));
        value.as_str().map(|s| s.trim().to_string())
    }

    /// Waits up to `timeout` for an element matching `css` whose text satisfies `pred`;
    /// returns that text, or panics saying what the page showed.
    pub async fn wait_for_text(
        &self,
        css: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(css).await;
            if let Some(t) = text.as_deref().filter(|t| pred(t)) {
                return t.to_string();
            }
            if Instant::now() > deadline {
                panic!("after {timeout:?}, {css} shows {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` until `script` returns something truthy (not null, false,
    /// 0 or ""); returns it, or panics naming `what`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self
                .execute(script, Vec::new())
                .await
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element matching `css`, as a user would (WebDriver's element
    /// click: scrolled into view, refused if something covers it).
    pub async fn click(&self, css: &str) {
        let found = self
            .call(
                reqwest::Method::POST,
                &self.session_path("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"));
        let id = found[ELEMENT].as_str().expect("an element id").to_string();
        self.call(
            reqwest::Method::POST,
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Accepts the `confirm()` (or `alert()`) the page opened, waiting up to 5 s for it.
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let accepted = self
                .call(
                    reqwest::Method::POST,
                    &self.session_path("/alert/accept"),
                    Some(json!({})),
                )
                .await;
            match accepted {
                Ok(_) => return,
                Err(e) if e.error == "no such alert" && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("accepting the page's dialog: {e}"),
            }
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let value = self
            .call(
                reqwest::Method::GET,
                &self.session_path("/screenshot"),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("taking a screenshot: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 PNG"))
            .expect("decoding the screenshot")
    }

    /// Ends the session (the browser quits); chromedriver is killed on drop.
    pub async fn close(self) {
        let _ = self
            .call(reqwest::Method::DELETE, &self.session_path(""), None)
            .await;
    }
}
