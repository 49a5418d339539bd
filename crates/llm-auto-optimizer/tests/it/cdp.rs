//! A small Chrome DevTools Protocol client for the dashboard's browser test: starts headless
//! Chromium on a new empty profile, opens one page, and offers what the test needs (navigate,
//! evaluate, wait for a condition, screenshots, the console's errors). JSON over one WebSocket
//! (tokio-tungstenite), commands matched to answers by id, everything else kept as events.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The browser a test can use: `$CHROMIUM`, else the first of the usual names on the PATH.
pub fn find_browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").map(PathBuf::from) {
        return path.exists().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicU64,
    session: String,
}

impl Browser {
    /// Starts the browser with the flags this machine needs (no sandbox as root, no GPU, no
    /// background connections to the closed network) and a `width` × `height` page.
    pub async fn launch(executable: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("profile directory");
        let mut child = Command::new(executable)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", executable.display()));
        // The browser prints its DevTools address on stderr.
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Some(url.trim().to_owned());
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("no DevTools address from the browser; it said:\n{}", seen.join("\n"))
        });
        // Keep reading stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("DevTools");
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        {
            let pending = pending.clone();
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                    match value.get("id").and_then(Value::as_u64) {
                        Some(id) => {
                            if let Some(answer) = pending.lock().unwrap().remove(&id) {
                                let _ = answer.send(value);
                            }
                        }
                        None => events.lock().unwrap().push(value),
                    }
                }
            });
        }
        let mut browser = Browser {
            child,
            _profile: profile,
            outgoing,
            pending,
            events,
            next_id: AtomicU64::new(1),
            session: String::new(),
        };
        let target =
            browser.command(None, "Target.createTarget", json!({"url": "about:blank"})).await;
        let target_id = target["targetId"].as_str().expect("target id").to_owned();
        let attached = browser
            .command(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true}))
            .await;
        browser.session = attached["sessionId"].as_str().expect("session id").to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser.set_viewport(width, height, false).await;
        browser
    }

    async fn command(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (answer, answered) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, answer);
        self.outgoing.send(Message::Text(message.to_string().into())).expect("DevTools open");
        let reply = tokio::time::timeout(Duration::from_secs(120), answered)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer from the browser"))
            .expect("DevTools open");
        if let Some(error) = reply.get("error") {
            panic!("{method}: {error}");
        }
        reply["result"].clone()
    }

    /// A command to the page.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.command(Some(&self.session), method, params).await
    }

    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    pub async fn navigate(&self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url})).await;
        assert!(result.get("errorText").is_none(), "navigating to {url}: {result}");
    }

    /// The value of a JavaScript expression (promises awaited); panics on an exception.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating `{expression}`: {exception}");
        }
        result["result"].get("value").cloned().unwrap_or(Value::Null)
    }

    /// Waits until `expression` is true (checked every 100 ms), at most `seconds`.
    pub async fn wait_for(&self, expression: &str, seconds: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let errors = self.console_errors();
                panic!("waited {seconds} s for `{expression}`; console errors: {errors:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page (at most 5,000 px tall) at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(1280.0).ceil();
        let height = size["height"].as_f64().unwrap_or(800.0).ceil().min(5_000.0);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("screenshot directory");
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// What the page logged as an error so far: uncaught exceptions, `console.error`, and the
    /// browser's own error entries (failed loads, refused content, CSP violations).
    pub fn console_errors(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        let mut errors = Vec::new();
        for event in events.iter() {
            let params = &event["params"];
            match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    let details = &params["exceptionDetails"];
                    errors.push(format!(
                        "exception: {} {}",
                        details["text"].as_str().unwrap_or(""),
                        details["exception"]["description"].as_str().unwrap_or("")
                    ));
                }
                Some("Runtime.consoleAPICalled")
                    if matches!(params["type"].as_str(), Some("error" | "assert")) =>
                {
                    let text: Vec<String> = params["args"]
                        .as_array()
                        .map(|args| {
                            args.iter()
                                .map(|arg| {
                                    arg["value"]
                                        .as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| arg["description"].to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    errors.push(format!("console.error: {}", text.join(" ")));
                }
                Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                    let entry = &params["entry"];
                    errors.push(format!(
                        "{}: {} {}",
                        entry["source"].as_str().unwrap_or("log"),
                        entry["text"].as_str().unwrap_or(""),
                        entry["url"].as_str().unwrap_or("")
                    ));
                }
                _ => {}
            }
        }
        errors
    }

    pub async fn close(mut self) {
        // Not awaited: the browser may close the connection before it answers.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let close = json!({"id": id, "method": "Browser.close", "params": {}});
        let _ = self.outgoing.send(Message::Text(close.to_string().into()));
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
