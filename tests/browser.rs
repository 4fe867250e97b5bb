//! The operator dashboard (SPEC §9, §13.4) driven end to end in a real
//! headless Chromium through chromedriver (WebDriver, via fantoccini):
//! sign-in, live updates over SSE, approve / reject in the page, history and
//! the request detail, the viewer role, the CSP header and a clean console.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./scripts/test`
//! installs them); without them these tests fail and say so.
//!
//! The README screenshots come from the ignored `screenshots` test:
//! `SUDOMODE_SCREENSHOTS=docs/screenshots cargo test --test browser screenshots -- --ignored`

mod common;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SudoMode, agent_client, api_world, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Upper bound for one whole test: a hang fails instead of blocking CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Upper bound for one wait on the page.
const WAIT: Duration = Duration::from_secs(20);

const POLICY: &str = r#"rules:
  - name: charges_need_approval
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
    reason: moving money needs a human
  - name: no_refunds
    resource: stripe.refunds
    host: api.stripe.com
    decision: DENY
    reason: refunds go through finance
  - name: sql_drop_needs_approval
    resource: sql
    action: [drop, truncate]
    decision: REQUIRE_APPROVAL
    reason: destructive SQL needs a human
    reply_after: 0
  - name: allow_rest
    resource: "*"
    decision: ALLOW
    reason: everything else is fine
"#;

const OPS: &str = "operators:
  - {name: alice, token: alice-token-1, role: approver}
  - {name: vic, token: viewer-token-1, role: viewer}
agents:
  - {name: billing-bot, token: bot-token-1}
  - {name: migrations-bot, token: db-token-1}
hold:
  timeout: 10m
  reply_after: 0   # held calls wait for the page however slow the machine
";

const ALICE: &str = "alice-token-1";
const VIEWER: &str = "viewer-token-1";
const STRIPE: &str = "api.stripe.com";
const NEON: &str = "ep-x.us-east-2.aws.neon.tech";

// ------------------------------------------------------------------ setup

/// Fails the test, with the way out, when the browser is not installed.
fn require_browser() -> PathBuf {
    let driver = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("chromedriver"))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            let p = PathBuf::from("/usr/bin/chromedriver");
            p.is_file().then_some(p)
        });
    match (Path::new(CHROMIUM).is_file(), driver) {
        (true, Some(driver)) => driver,
        (chromium, driver) => panic!(
            "the browser tests need Debian's `chromium` and `chromium-driver` \
             (found chromium: {chromium}, chromedriver: {}). Run ./scripts/test, \
             which installs them, or `apt-get install -y chromium chromium-driver`.",
            driver.is_some()
        ),
    }
}

/// Runs a test body with an upper bound on its duration.
async fn bounded<F: Future<Output = ()>>(body: F) {
    if tokio::time::timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("browser test did not finish within {TEST_TIMEOUT:?}");
    }
}

/// A chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start(bin: &Path) -> Driver {
        let port = free_port();
        // Its own process group: Chromium inherits it, so one signal to the
        // group on drop also ends a browser that a failed test left open.
        let child = Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let driver = Driver { child, port };
        let http = plain_http();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = http.get(driver.url("/status")).send().await
                && r.status().is_success()
            {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain_http() -> reqwest::Client {
    common::install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A headless Chromium session with its own profile directory.
struct Browser {
    client: Client,
    driver: Driver,
    session: String,
    width: u32,
    closed: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(width: u32, height: u32) -> Browser {
        let bin = require_browser();
        let driver = Driver::start(&bin).await;
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--no-first-run".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--no-proxy-server".into(),
            "--lang=en-US".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({"binary": CHROMIUM, "args": args});
        if width < 500 {
            // Desktop Chromium windows cannot be narrower than 500 px: a
            // phone is emulated (viewport, touch, mobile user agent).
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/148.0 Mobile Safari/537.36",
            });
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url(""))
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));
        let session = client
            .session_id()
            .await
            .unwrap()
            .expect("WebDriver session id");
        let b = Browser {
            client,
            driver,
            session,
            width,
            closed: false,
            _profile: profile,
        };
        if width >= 500 {
            // --window-size is the outer size: grow the window so that the
            // viewport is exactly width × height.
            let d = b
                .js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
                .await;
            let (dw, dh) = (d[0].as_u64().unwrap_or(0), d[1].as_u64().unwrap_or(0));
            if dw + dh > 0 {
                b.client
                    .set_window_size(width + dw as u32, height + dh as u32)
                    .await
                    .unwrap();
            }
            let h = b.js("return window.innerHeight").await;
            assert_eq!(h, json!(height), "viewport height");
        }
        b
    }

    /// PNG of the whole page, not just the viewport (Chrome DevTools
    /// `Page.captureScreenshot` through chromedriver).
    async fn full_page_screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let cdp = |cmd: &str, params: Value| {
            let url = self
                .driver
                .url(&format!("/session/{}/goog/cdp/execute", self.session));
            let body = json!({"cmd": cmd, "params": params});
            async move {
                let r = plain_http().post(url).json(&body).send().await.unwrap();
                assert!(r.status().is_success(), "CDP: {}", r.status());
                r.json::<Value>().await.unwrap()["value"].clone()
            }
        };
        let m = cdp("Page.getLayoutMetrics", json!({})).await;
        let (w, h) = (
            m["cssContentSize"]["width"].as_f64().unwrap(),
            m["cssContentSize"]["height"].as_f64().unwrap(),
        );
        let shot = cdp(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        )
        .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.closed = true;
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn js_arg(&self, script: &str, arg: Value) -> Value {
        self.client.execute(script, vec![arg]).await.unwrap()
    }

    /// Polls a script until it returns something truthy; returns it.
    async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.client.execute(script, args.clone()).await.unwrap();
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.dump("timeout").await;
                panic!("timed out waiting for {what} (last value {v}); page saved to {shot}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let shot = self.dump("timeout").await;
                panic!("no element {css}: {e}; page saved to {shot}");
            }
        }
    }

    /// The DOM text of an element (not its CSS-transformed rendering).
    async fn text_of(&self, css: &str) -> String {
        let e = self.wait_for(css).await;
        e.prop("textContent").await.unwrap().unwrap_or_default()
    }

    /// Saves a screenshot and the page's text for a failed wait.
    async fn dump(&self, tag: &str) -> String {
        let dir = std::env::temp_dir().join(format!("sudomode-browser-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let png = dir.join(format!("{tag}-{}.png", self.session));
        if let Ok(bytes) = self.client.screenshot().await {
            let _ = std::fs::write(&png, bytes);
        }
        if let Ok(text) = self
            .client
            .execute("return document.body.innerText", vec![])
            .await
        {
            let _ = std::fs::write(png.with_extension("txt"), text.as_str().unwrap_or(""));
        }
        png.display().to_string()
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn login(&self, sm: &SudoMode, token: &str) {
        self.goto(&sm.dashboard_url("/")).await;
        let field = self.wait_for("[data-testid=login-token]").await;
        // The window (or emulated phone) size asked for is the layout
        // viewport the page gets.
        let w = self.js("return document.documentElement.clientWidth").await;
        assert_eq!(w, json!(self.width), "viewport width");
        field.send_keys(token).await.unwrap();
        self.wait_for("[data-testid=login-submit]")
            .await
            .click()
            .await
            .unwrap();
        self.wait_for("[data-testid=logout-btn]").await;
    }

    /// The page's console since the last call (chromedriver's log endpoint;
    /// reading it empties it).
    async fn console(&self) -> Vec<Value> {
        let r = plain_http()
            .post(
                self.driver
                    .url(&format!("/session/{}/se/log", self.session)),
            )
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "log endpoint: {}", r.status());
        let v: Value = r.json().await.unwrap();
        v["value"].as_array().cloned().unwrap_or_default()
    }

    /// Fails on any console error or warning except the one expected 401:
    /// the session probe before sign-in.
    async fn assert_clean_console(&self) {
        let entries = self.console().await;
        let bad: Vec<&Value> = entries
            .iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .filter(|e| {
                let msg = e["message"].as_str().unwrap_or("");
                !(msg.contains("/api/v1/session") && msg.contains("401"))
            })
            .collect();
        assert!(bad.is_empty(), "console errors: {bad:#?}");
    }

    /// Nothing on the page is wider than the viewport (no sideways scroll).
    async fn assert_fits_width(&self, what: &str) {
        let overflow = self
            .js("return document.documentElement.scrollWidth - window.innerWidth")
            .await;
        assert_eq!(
            overflow,
            json!(0),
            "{what} scrolls sideways at {} px",
            self.width
        );
    }

    /// PNG of the viewport, with the mouse parked in a corner (no hover
    /// effects left over from the last click).
    async fn screenshot(&self) -> Vec<u8> {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction};
        let park = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
            duration: None,
            x: 0.0,
            y: 0.0,
        });
        self.client.perform_actions(park).await.unwrap();
        self.client.screenshot().await.unwrap()
    }
}

impl Drop for Browser {
    /// A test that failed midway still ends its browser: ask chromedriver
    /// to quit the session (Chromium exits cleanly, helpers included).
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.driver.port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session, self.driver.port
        );
        let _ = s.read(&mut [0u8; 512]);
    }
}

/// An agent's charge through the proxy, held until someone decides.
fn spawn_charge(sm: &SudoMode, body: &'static str) -> tokio::task::JoinHandle<(u16, String)> {
    let bot = agent_client(sm, "billing-bot", "bot-token-1");
    tokio::spawn(async move {
        let r = bot
            .post(format!("https://{STRIPE}/v1/charges"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("agent call");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

/// An agent's SQL over HTTP (Neon's wire format) through the proxy.
fn spawn_sql(sm: &SudoMode, sql: &str) -> tokio::task::JoinHandle<(u16, String)> {
    let bot = agent_client(sm, "migrations-bot", "db-token-1");
    let body = json!({"query": sql, "params": []}).to_string();
    tokio::spawn(async move {
        let r = bot
            .post(format!("https://{NEON}/sql"))
            .header("content-type", "application/json")
            .header(
                "neon-connection-string",
                format!("postgresql://app:placeholder@{NEON}/shop"),
            )
            .body(body)
            .send()
            .await
            .expect("agent call");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

async fn world() -> (common::TestCa, common::Upstream, SudoMode) {
    api_world(POLICY, OPS, &[STRIPE, NEON]).await
}

/// Waits for the agent's held call to end, with a bound.
async fn finished(call: tokio::task::JoinHandle<(u16, String)>) -> (u16, String) {
    tokio::time::timeout(WAIT, call)
        .await
        .expect("the agent's call was not released")
        .expect("agent task")
}

fn card_css(id: &str) -> String {
    format!("[data-testid=pending-card][data-request-id=\"{id}\"]")
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_signs_in_sees_live_holds_and_approves_and_rejects_in_the_page() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = world().await;
        let b = Browser::open(1280, 900).await;

        // Sign in → the pending view, empty.
        b.login(&sm, ALICE).await;
        assert_eq!(
            b.text_of("[data-testid=operator-name]").await,
            "alice"
        );
        assert_eq!(
            b.text_of("[data-testid=operator-role]").await,
            "approver"
        );
        b.wait_js(
            "the empty pending view",
            "const e = document.querySelector('[data-testid=pending-empty]'); return !!e && !e.hidden",
            vec![],
        )
        .await;
        let current = b.js("return document.querySelector('nav a[aria-current=page]')?.dataset.section").await;
        assert_eq!(current, json!("pending"), "lands on the pending view");
        // Mark the document: a reload would lose this, so anything that
        // appears below arrived live, over SSE.
        b.js("window.__noReload = 1; return 1").await;

        // A real agent call held by the proxy appears without a reload.
        let call = spawn_charge(&sm, "amount=5000&currency=usd&description=Order%207");
        let held = sm.wait_pending(ALICE, 1).await;
        let id = held[0]["id"].as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&id)).await;
        let text = card.text().await.unwrap();
        assert!(text.contains("$50.00"), "card shows the amount as money: {text}");
        assert!(text.contains("billing-bot"), "{text}");
        assert!(text.contains("stripe.charges"), "{text}");
        assert!(text.contains("charges_need_approval"), "matched rule: {text}");
        assert_eq!(b.js("return window.__noReload").await, json!(1), "no reload");
        b.wait_js(
            "the pending count in the header",
            "return document.querySelector('[data-testid=stats-pending]').textContent === '1'",
            vec![],
        )
        .await;
        assert!(!call.is_finished(), "held until someone decides");
        assert!(up.requests().is_empty(), "nothing upstream before approval");

        // Approve in the page: approve → confirm releases the agent's call.
        card.find(Locator::Css("[data-testid=approve-btn]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let confirm = b.wait_for(&format!("{} [data-testid=confirm-btn]", card_css(&id))).await;
        assert_eq!(confirm.attr("data-action").await.unwrap().as_deref(), Some("approve"));
        assert!(!call.is_finished(), "the first click only asks for confirmation");
        confirm.click().await.unwrap();
        let (status, body) = finished(call).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("stand-in") || body.contains("/v1/charges"), "upstream's answer: {body}");
        assert_eq!(up.requests().len(), 1, "forwarded exactly once");
        assert_eq!(up.requests()[0].body, b"amount=5000&currency=usd&description=Order%207");
        b.wait_js(
            "the approved card to leave",
            "return document.querySelectorAll('[data-testid=pending-card]').length === 0",
            vec![],
        )
        .await;
        let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
        assert_eq!(rec["approvals"][0]["operator"], "alice", "{rec}");

        // Reject another one, with a reason typed in the page.
        let call = spawn_charge(&sm, "amount=990000&currency=eur");
        let card = b
            .wait_js(
                "a second held charge",
                "return document.querySelector('[data-testid=pending-card]')?.dataset.requestId",
                vec![],
            )
            .await;
        let rid = card.as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&rid)).await;
        assert!(card.text().await.unwrap().contains("€9,900.00"));
        card.find(Locator::Css("[data-testid=reason-input]"))
            .await
            .unwrap()
            .send_keys("too large for a test order")
            .await
            .unwrap();
        card.find(Locator::Css("[data-testid=reject-btn]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let confirm = b.wait_for(&format!("{} [data-testid=confirm-btn]", card_css(&rid))).await;
        assert_eq!(confirm.attr("data-action").await.unwrap().as_deref(), Some("reject"));
        confirm.click().await.unwrap();
        let (status, body) = finished(call).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("alice"), "rejection names the operator: {body}");
        assert_eq!(up.requests().len(), 1, "the rejected call never went upstream");

        // History shows it; its detail shows who rejected it and why.
        b.goto(&sm.dashboard_url("/#/history")).await;
        let row = b
            .wait_for(&format!("[data-testid=history-row][data-request-id=\"{rid}\"]"))
            .await;
        let badge = row
            .find(Locator::Css("[data-testid=status-badge]"))
            .await
            .unwrap();
        assert_eq!(badge.text().await.unwrap(), "rejected");
        let approved_row = b
            .wait_for(&format!("[data-testid=history-row][data-request-id=\"{id}\"]"))
            .await;
        let approved_status = approved_row
            .find(Locator::Css("[data-testid=status-badge]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(approved_status, "completed");
        // A filter narrows the list (kept in the URL).
        b.goto(&sm.dashboard_url("/#/history?status=rejected")).await;
        b.wait_js(
            "the filtered history",
            "const rows = [...document.querySelectorAll('[data-testid=history-row]')]; \
             return rows.length === 1 && rows[0].dataset.requestId === arguments[0]",
            vec![json!(rid)],
        )
        .await;
        let row = b
            .wait_for(&format!("[data-testid=history-row][data-request-id=\"{rid}\"]"))
            .await;
        row.find(Locator::Css("a")).await.unwrap().click().await.unwrap();
        let events = b.wait_for("[data-testid=detail-events]").await;
        let trail = events.text().await.unwrap();
        assert!(trail.contains("rejected"), "audit trail: {trail}");
        let page = b.wait_for(".rejection").await.text().await.unwrap();
        assert!(page.contains("alice"), "rejected_by: {page}");
        assert!(page.contains("too large for a test order"), "reason: {page}");
        assert_eq!(
            b.client.current_url().await.unwrap().fragment(),
            Some(format!("/requests/{rid}").as_str())
        );

        // Keyboard only: Tab from the reason field to Approve, Enter, Enter.
        b.goto(&sm.dashboard_url("/#/pending")).await;
        b.wait_for("[data-testid=pending-list]").await;
        let call = spawn_charge(&sm, "amount=1200&currency=usd");
        let kid = b
            .wait_js(
                "a third held charge",
                "return document.querySelector('[data-testid=pending-card]')?.dataset.requestId",
                vec![],
            )
            .await;
        let kid = kid.as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&kid)).await;
        let reason = card
            .find(Locator::Css("[data-testid=reason-input]"))
            .await
            .unwrap();
        reason.click().await.unwrap();
        reason.send_keys("ok by keyboard").await.unwrap();
        let tab = fantoccini::key::Key::Tab.to_string();
        let enter = fantoccini::key::Key::Enter.to_string();
        b.client.active_element().await.unwrap().send_keys(&tab).await.unwrap();
        let focused = b
            .js("return document.activeElement.dataset.testid || document.activeElement.tagName")
            .await;
        assert_eq!(focused, json!("approve-btn"), "Tab reaches Approve");
        b.client.active_element().await.unwrap().send_keys(&enter).await.unwrap();
        let focused = b
            .wait_js(
                "focus on the confirmation",
                "const a = document.activeElement; return a && a.dataset.testid === 'confirm-btn' && a.dataset.action",
                vec![],
            )
            .await;
        assert_eq!(focused, json!("approve"));
        b.client.active_element().await.unwrap().send_keys(&enter).await.unwrap();
        let (status, body) = finished(call).await;
        assert_eq!(status, 200, "{body}");
        let (_, rec) = sm.api_get(&format!("/api/v1/requests/{kid}"), ALICE).await;
        assert_eq!(rec["approvals"][0]["reason"], "ok by keyboard", "{rec}");

        // Policy view: version and rules from the server.
        b.goto(&sm.dashboard_url("/#/policy")).await;
        let version = b.wait_for("[data-testid=policy-version]").await.text().await.unwrap();
        let (_, policy) = sm.api_get("/api/v1/policy", ALICE).await;
        assert_eq!(Some(version.as_str()), policy["version"].as_str());
        let rules = b.wait_for("[data-testid=policy-rules]").await.text().await.unwrap();
        assert!(rules.contains("sql_drop_needs_approval"), "{rules}");
        assert!(rules.contains("host api.stripe.com"), "a rule's host scope is shown: {rules}");
        assert!(
            rules.contains("waits for the decision"),
            "a rule's own reply_after is shown: {rules}"
        );
        assert!(b.client.find_all(Locator::Css("[data-testid=policy-error]")).await.unwrap().is_empty());

        b.assert_clean_console().await;

        // Sign out → the sign-in form, and the tab forgets its session.
        b.wait_for("[data-testid=logout-btn]").await.click().await.unwrap();
        b.wait_for("[data-testid=login-token]").await;
        assert_eq!(
            b.js("return sessionStorage.getItem('sudomode.session')").await,
            Value::Null
        );
        b.goto(&sm.dashboard_url("/#/history")).await;
        b.wait_for("[data-testid=login-token]").await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_sees_the_queue_but_cannot_decide() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = world().await;
        let call = spawn_charge(&sm, "amount=5000&currency=usd");
        let held = sm.wait_pending(ALICE, 1).await;
        let id = held[0]["id"].as_str().unwrap().to_string();

        let b = Browser::open(390, 844).await;
        // A wrong token is refused in the page.
        b.goto(&sm.dashboard_url("/")).await;
        b.wait_for("[data-testid=login-token]").await.send_keys("not-a-token").await.unwrap();
        b.wait_for("[data-testid=login-submit]").await.click().await.unwrap();
        b.wait_js(
            "the refusal message",
            "return document.querySelector('.login-msg')?.textContent.includes('not accepted')",
            vec![],
        )
        .await;
        // The browser logs the refused sign-in: proof that the console is
        // really read (so "clean" below means something). Expected; dropped.
        let log = b.console().await;
        assert!(
            log.iter().any(|e| e["level"] == "SEVERE"
                && e["message"].as_str().is_some_and(|m| m.contains("401"))),
            "the browser log should show the refused sign-in: {log:#?}"
        );

        b.login(&sm, VIEWER).await;
        assert_eq!(
            b.text_of("[data-testid=operator-role]").await,
            "viewer"
        );
        let card = b.wait_for(&card_css(&id)).await;
        assert!(card.text().await.unwrap().contains("$50.00"));
        for sel in ["approve-btn", "reject-btn", "confirm-btn", "reason-input"] {
            let found = b
                .client
                .find_all(Locator::Css(&format!("[data-testid={sel}]")))
                .await
                .unwrap();
            assert!(found.is_empty(), "a viewer must not get {sel}");
        }
        // Nor on the detail page.
        b.goto(&sm.dashboard_url(&format!("/#/requests/{id}"))).await;
        b.wait_for("[data-testid=detail-events]").await;
        assert!(
            b.client
                .find_all(Locator::Css("[data-testid=approve-btn]"))
                .await
                .unwrap()
                .is_empty()
        );
        // The page stays usable on a phone: nothing wider than the screen.
        b.assert_fits_width("the detail page").await;

        // Even a request forged from the page with the viewer's session
        // token is refused by the server.
        let forged = b
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   (async () => {
                     const token = sessionStorage.getItem('sudomode.session');
                     const r = await fetch('/api/v1/requests/' + arguments[0] + '/approve', {
                       method: 'POST', body: '{}',
                       headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token}});
                     done(r.status);
                   })().catch((e) => done(String(e)));"#,
                vec![json!(id)],
            )
            .await
            .unwrap();
        assert_eq!(forged, json!(403));
        b.console().await; // that 403 is logged by the browser; it was ours
        assert!(!call.is_finished());
        assert!(up.requests().is_empty());
        let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
        assert_eq!(rec["status"], "pending");

        b.goto(&sm.dashboard_url("/#/history")).await;
        b.wait_for("[data-testid=history-row]").await;
        b.assert_fits_width("the history page").await;
        b.goto(&sm.dashboard_url("/#/policy")).await;
        b.wait_for("[data-testid=policy-rules]").await;
        b.assert_fits_width("the policy page").await;
        b.goto(&sm.dashboard_url("/#/pending")).await;
        b.wait_for(&card_css(&id)).await;
        b.assert_fits_width("the pending page").await;
        b.assert_clean_console().await;
        b.close().await;
        call.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_served_with_a_strict_csp() {
    require_browser();
    bounded(async {
        let (_ca, _up, sm) = world().await;
        let r = sm.api().get(sm.dashboard_url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let csp = r
            .headers()
            .get("content-security-policy")
            .expect("CSP header on /")
            .to_str()
            .unwrap()
            .to_string();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains("style="), "no inline code");

        // In the browser: the policy is enforced (an inline script does not
        // run) and the page loads everything it needs from its own origin.
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;
        let blocked = b
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                   window.__inline = 0;
                   document.addEventListener('securitypolicyviolation', () => done('blocked'), {once: true});
                   const s = document.createElement('script');
                   s.textContent = 'window.__inline = 1';
                   document.body.append(s);
                   setTimeout(() => done(window.__inline ? 'ran' : 'silent'), 2000);"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(blocked, json!("blocked"), "inline script must be refused by the CSP");
        b.console().await; // drop the violation report we just caused
        let origins = b
            .js(r#"return [...new Set(performance.getEntriesByType('resource').map((e) => new URL(e.name).origin))]"#)
            .await;
        let own = sm.dashboard_url("");
        for o in origins.as_array().unwrap() {
            assert_eq!(o.as_str(), Some(own.as_str()), "third-party request: {origins}");
        }
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

// ------------------------------------------------------------------ another port (issue 20.2)

/// A page an agent serves on another port of 127.0.0.1. It records the
/// `Cookie` headers the browser sends it, and its script tries to approve
/// with whatever the browser will attach.
struct AgentPage {
    addr: std::net::SocketAddr,
    cookies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AgentPage {
    async fn start(dashboard: &str, id: &str) -> AgentPage {
        use axum::http::HeaderMap;
        use axum::response::Html;
        let cookies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let page = format!(
            r#"<!doctype html><title>agent</title><script>
(async () => {{
  const approve = '{dashboard}/api/v1/requests/{id}/approve';
  const held = sessionStorage.getItem('sudomode.session');
  const headers = {{'Content-Type': 'text/plain'}};
  if (held) headers['Authorization'] = 'Bearer ' + held;
  let result;
  try {{
    const r = await fetch(approve, {{method: 'POST', credentials: 'include', mode: 'no-cors', headers, body: '{{}}'}});
    result = 'sent ' + r.type;
  }} catch (e) {{ result = 'failed'; }}
  document.title = 'done: ' + result + (held ? ' with a token' : '');
}})();
</script>"#
        );
        let seen = cookies.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move |headers: HeaderMap| {
                let seen = seen.clone();
                let page = page.clone();
                async move {
                    for c in headers.get_all("cookie") {
                        seen.lock()
                            .unwrap()
                            .push(c.to_str().unwrap_or("").to_string());
                    }
                    Html(page)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AgentPage { addr, cookies }
    }

    /// Replays every cookie it received to the dashboard, the way the
    /// agent's server would: read the session (and any CSRF token), approve.
    async fn replay(&self, sm: &SudoMode, id: &str) -> Vec<u16> {
        let http = plain_http();
        let mut statuses = Vec::new();
        let cookies = self.cookies.lock().unwrap().clone();
        for cookie in cookies {
            let who = http
                .get(sm.dashboard_url("/api/v1/session"))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            statuses.push(who.status().as_u16());
            let csrf = who.json::<Value>().await.unwrap_or(Value::Null)["csrf_token"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let r = http
                .post(sm.dashboard_url(&format!("/api/v1/requests/{id}/approve")))
                .header("cookie", &cookie)
                .header("x-csrf-token", csrf)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        statuses
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_port_cannot_approve() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = world().await;
        let call = spawn_charge(&sm, "amount=2500000&currency=usd&destination=acct_agent");
        let held = sm.wait_pending(ALICE, 1).await;
        let id = held[0]["id"].as_str().unwrap().to_string();

        // The operator signs in on the dashboard and sees the held payout…
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;
        b.wait_for(&card_css(&id)).await;

        // …then opens a page the agent serves on another port of 127.0.0.1.
        let page = AgentPage::start(&sm.dashboard_url(""), &id).await;
        b.goto(&format!("http://{}/", page.addr)).await;
        let title = b
            .wait_js(
                "the agent page's attempt",
                "return document.title.startsWith('done') && document.title",
                vec![],
            )
            .await;
        assert!(
            !title.as_str().unwrap_or("").contains("with a token"),
            "the agent page read the dashboard's session: {title}"
        );
        let replayed = page.replay(&sm, &id).await;
        assert!(
            replayed.iter().all(|s| *s == 401),
            "a cookie the browser sent the agent's page worked on the dashboard: {replayed:?}"
        );

        let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
        assert_eq!(rec["status"], "pending", "{rec}");
        assert!(rec["approvals"].as_array().unwrap().is_empty(), "{rec}");
        assert!(!call.is_finished(), "the payout is still held");
        assert!(up.requests().is_empty(), "nothing reached Stripe");

        // The operator's own tab still works.
        b.goto(&sm.dashboard_url("/#/pending")).await;
        b.wait_for(&card_css(&id)).await;
        b.close().await;
        call.abort();
    })
    .await;
}

// ------------------------------------------------------------------ what the operator reads (issue 20)

const HOLD_ALL: &str = "rules:\n  - name: hold_all\n    resource: \"*\"\n    decision: REQUIRE_APPROVAL\n    reason: a human reads every argument\n";

/// Issue 20.5: the card shows SQL as PostgreSQL reads it, with the
/// destructive verb after a backslash-quote flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_is_highlighted_as_postgresql_reads_it() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = api_world(HOLD_ALL, OPS, &[STRIPE, NEON]).await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;

        // 20.5: PostgreSQL ends the string at \' — `OR true` is code, and
        // the DROP after it runs.
        let sql = spawn_sql(&sm, r"SELECT * FROM users WHERE name = 'x\' OR true; DROP TABLE users; SELECT 'oops");
        let held = sm.wait_pending(ALICE, 1).await;
        let sql_id = held[0]["id"].as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&sql_id)).await;
        let chips = b
            .js_arg(
                "return [...document.querySelectorAll(arguments[0] + ' .danger-chip')].map((e) => e.textContent)",
                json!(card_css(&sql_id)),
            )
            .await;
        assert!(chips.as_array().unwrap().contains(&json!("DROP")), "{chips}");
        let strings = b
            .js_arg(
                "return [...document.querySelectorAll(arguments[0] + ' .sql-string')].map((e) => e.textContent)",
                json!(card_css(&sql_id)),
            )
            .await;
        assert_eq!(strings, json!([r"'x\'", "'oops"]), "strings as PostgreSQL reads them");
        let keywords = b
            .js_arg(
                "return [...document.querySelectorAll(arguments[0] + ' .sql-keyword')].map((e) => e.textContent)",
                json!(card_css(&sql_id)),
            )
            .await;
        assert!(keywords.as_array().unwrap().contains(&json!("OR")), "{keywords}");
        drop(card);
        assert!(up.requests().is_empty(), "nothing forwarded");
        b.assert_clean_console().await;
        b.close().await;
        sql.abort();
    })
    .await;
}

/// Issues 20.4 and 20.12: the card shows bind parameters, meaning-changing
/// headers, bidi and zero-width characters as visible markers, and any long
/// value in full on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_show_every_input_and_hidden_character() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = api_world(HOLD_ALL, OPS, &[STRIPE, NEON]).await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;

        // 20.4: bind parameters change what runs.
        let (s, v) = sm
            .api_post(
                "/v1/govern",
                "bot-token-1",
                json!({"resource": "sql", "action": "update",
                       "args": {"sql": "UPDATE accounts SET balance = $1 WHERE id = $2", "params": [0, "acct_9"]}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let params_id = v["request_id"].as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&params_id)).await;
        let text = card.text().await.unwrap();
        assert!(text.contains("$1") && text.contains("$2") && text.contains("acct_9"), "{text}");

        // 20.4 and 20.12: a Stripe call for a connected account, with a
        // reversed account number and long values.
        let bot = agent_client(&sm, "billing-bot", "bot-token-1");
        let long = format!("{}END-OF-MEMO", "m".repeat(400));
        let body = format!(
            "amount=5000&currency=usd&metadata[iban]=DE89%E2%80%AE4321%E2%80%AC&metadata[note]=ok%E2%80%8B&description={long}"
        );
        let charge = tokio::spawn(async move {
            bot.post(format!("https://{STRIPE}/v1/charges"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("stripe-account", "acct_CONNECTED_9")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        let held = sm.wait_pending(ALICE, 2).await;
        let charge_id = held
            .iter()
            .find(|r| r["resource"] == "stripe.charges")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .expect("the held charge");
        let card_sel = card_css(&charge_id);
        let card = b.wait_for(&card_sel).await;
        let headers = b.text_of(&format!("{card_sel} [data-testid=request-headers]")).await;
        assert!(headers.contains("stripe-account") && headers.contains("acct_CONNECTED_9"), "{headers}");
        let markers = b
            .js_arg(
                "return [...document.querySelectorAll(arguments[0] + ' .args [data-testid=invisible-char]')].map((e) => e.textContent)",
                json!(card_sel),
            )
            .await;
        for m in ["[U+202E]", "[U+202C]", "[U+200B]"] {
            assert!(markers.as_array().unwrap().contains(&json!(m)), "{m}: {markers}");
        }
        let raw = b
            .js_arg(
                "return document.querySelector(arguments[0] + ' .args .kv').textContent",
                json!(card_sel),
            )
            .await;
        let raw = raw.as_str().unwrap();
        assert!(!raw.contains(['\u{202E}', '\u{202C}', '\u{200B}']), "{raw}");
        assert!(!raw.contains("END-OF-MEMO"), "a long value starts cut");
        card.find(Locator::Css("[data-testid=expand-value]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.wait_js(
            "the whole long value",
            "return document.querySelector(arguments[0] + ' .args .kv').textContent.includes('END-OF-MEMO')",
            vec![json!(card_sel)],
        )
        .await;
        assert!(up.requests().is_empty(), "nothing forwarded");
        b.assert_clean_console().await;
        b.close().await;
        charge.abort();
    })
    .await;
}

// ------------------------------------------------------------------ screenshots

/// Regenerates the README screenshots:
/// `SUDOMODE_SCREENSHOTS=docs/screenshots cargo test --test browser screenshots -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots; run with SUDOMODE_SCREENSHOTS=<dir>"]
async fn screenshots() {
    require_browser();
    let Some(dir) = std::env::var_os("SUDOMODE_SCREENSHOTS") else {
        panic!("set SUDOMODE_SCREENSHOTS to the output directory, e.g. docs/screenshots");
    };
    let dir = {
        let d = PathBuf::from(dir);
        if d.is_absolute() {
            d
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(d)
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    bounded(async {
        let (_ca, _up, sm) = world().await;

        // Some history: allowed, denied, approved, rejected.
        let bot = agent_client(&sm, "billing-bot", "bot-token-1");
        let r = bot
            .get(format!("https://{STRIPE}/v1/customers?limit=3"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = bot
            .post(format!("https://{STRIPE}/v1/refunds"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("charge=ch_3PqXyZ&amount=2500")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let approved = spawn_charge(&sm, "amount=129900&currency=usd&customer=cus_Q4x2&description=Annual%20plan");
        let held = sm.wait_pending(ALICE, 1).await;
        let approved_id = held[0]["id"].as_str().unwrap().to_string();
        sm.api_post(
            &format!("/api/v1/requests/{approved_id}/approve"),
            ALICE,
            json!({"reason": "customer confirmed by phone"}),
        )
        .await;
        assert_eq!(finished(approved).await.0, 200);
        let rejected = spawn_sql(&sm, "TRUNCATE audit_log");
        let held = sm.wait_pending(ALICE, 1).await;
        let rejected_id = held[0]["id"].as_str().unwrap().to_string();
        sm.api_post(
            &format!("/api/v1/requests/{rejected_id}/reject"),
            ALICE,
            json!({"reason": "never truncate the audit log"}),
        )
        .await;
        assert_eq!(finished(rejected).await.0, 403);
        let r = agent_client(&sm, "migrations-bot", "db-token-1")
            .post(format!("https://{NEON}/sql"))
            .header("content-type", "application/json")
            .body(json!({"query": "SELECT id, email FROM users WHERE id = $1", "params": [42]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // Held now: a Stripe charge and a SQL drop.
        let charge = spawn_charge(&sm, "amount=5000&currency=usd&customer=cus_Q4x2&description=Order%20%237");
        let charge_id = sm.wait_pending(ALICE, 1).await[0]["id"].as_str().unwrap().to_string();
        let drop = spawn_sql(&sm, "DROP TABLE users");
        sm.wait_pending(ALICE, 2).await;
        // Standing grants (SPEC §6.1): one active, one revoked.
        for (agent, cond, reason) in [
            ("billing-bot", "args.amount <= 10000", "month-end invoicing"),
            ("migrations-bot", "", "maintenance window"),
        ] {
            let mut g = json!({"agent": agent, "resource": "stripe.charges", "action": "create",
                               "for": "8h", "max_uses": 20, "reason": reason});
            if !cond.is_empty() {
                g["condition"] = json!(cond);
            }
            let (s, g) = sm.api_post("/api/v1/grants", ALICE, g).await;
            assert_eq!(s, 201, "{g}");
            if cond.is_empty() {
                let gid = g["id"].as_str().unwrap();
                sm.api()
                    .delete(sm.dashboard_url(&format!("/api/v1/grants/{gid}")))
                    .bearer_auth(ALICE)
                    .send()
                    .await
                    .unwrap();
            }
        }

        for (width, height, tag) in [(1280u32, 900u32, "desktop"), (390, 844, "phone")] {
            let b = Browser::open(width, height).await;
            b.login(&sm, ALICE).await;
            b.wait_js(
                "two cards",
                "return document.querySelectorAll('[data-testid=pending-card]').length === 2",
                vec![],
            )
            .await;
            // Let the header counts and live badge settle.
            b.wait_js(
                "the live indicator",
                "return document.querySelector('.live')?.classList.contains('live') && document.querySelector('[data-testid=stats-pending]').textContent === '2'",
                vec![],
            )
            .await;
            save(&dir, &format!("pending-{tag}.png"), b.screenshot().await);

            b.goto(&sm.dashboard_url(&format!("/#/requests/{approved_id}"))).await;
            b.wait_for("[data-testid=detail-events]").await;
            b.wait_for(".approvers").await;
            let png = if tag == "phone" {
                // The approval and the start of the audit trail.
                b.js("document.querySelector('.approvals').closest('section').scrollIntoView({block: 'start'}); return 1")
                    .await;
                b.screenshot().await
            } else {
                b.full_page_screenshot().await
            };
            save(&dir, &format!("detail-{tag}.png"), png);

            b.goto(&sm.dashboard_url("/#/history")).await;
            b.wait_for("[data-testid=history-row]").await;
            b.js("window.scrollTo(0, 0); return 1").await;
            save(&dir, &format!("history-{tag}.png"), b.screenshot().await);

            b.goto(&sm.dashboard_url("/#/policy")).await;
            b.wait_for("[data-testid=policy-rules]").await;
            save(&dir, &format!("policy-{tag}.png"), b.screenshot().await);

            b.goto(&sm.dashboard_url("/#/grants")).await;
            b.wait_for("[data-testid=grant-row]").await;
            save(&dir, &format!("grants-{tag}.png"), b.screenshot().await);

            // Approve with edits: the amount edited as money, the diff shown.
            b.goto(&sm.dashboard_url("/#/pending")).await;
            let card = b.wait_for(&card_css(&charge_id)).await;
            card.find(Locator::Css("[data-testid=edit-btn]")).await.unwrap().click().await.unwrap();
            let amount = b
                .wait_for(&format!("{} [data-testid=edit-field][data-key=amount]", card_css(&charge_id)))
                .await;
            amount.clear().await.unwrap();
            amount.send_keys("25.00").await.unwrap();
            choose(&b, &format!("{} [data-testid=grant-for]", card_css(&charge_id)), "1h").await;
            card.find(Locator::Css("[data-testid=approve-btn]")).await.unwrap().click().await.unwrap();
            b.wait_for(&format!("{} [data-testid=edit-diff-line]", card_css(&charge_id))).await;
            b.js_arg(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'start'}); return 1",
                json!(card_css(&charge_id)),
            )
            .await;
            save(&dir, &format!("approve-edits-{tag}.png"), b.screenshot().await);

            b.assert_clean_console().await;
            b.close().await;
        }
        charge.abort();
        drop.abort();
    })
    .await;
}

fn save(dir: &Path, name: &str, png: Vec<u8>) {
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

// ------------------------------------------------------------------ MCP (SPEC §4.9)

const MCP_HOST: &str = "mcp.example.com";
const MCP_POLICY: &str = r#"rules:
  - name: tool_calls_need_a_human
    resource: "mcp.*.tools"
    decision: REQUIRE_APPROVAL
    reason: every tool call needs a human
"#;

/// An agent's MCP tool call (JSON-RPC over HTTP) through the proxy.
fn spawn_tool_call(sm: &SudoMode, body: String) -> tokio::task::JoinHandle<(u16, String)> {
    let bot = agent_client(sm, "billing-bot", "bot-token-1");
    tokio::spawn(async move {
        let r = bot
            .post(format!("https://{MCP_HOST}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await
            .expect("agent call");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

fn tool_call_body(id: u32, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mcp_tool_call_shows_server_tool_and_arguments_and_is_approved_in_the_page() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = api_world(MCP_POLICY, OPS, &[MCP_HOST]).await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;

        let body = tool_call_body(
            7,
            "send_payment",
            json!({"amount": 250, "to": {"iban": "DE89 3704", "name": "Ada"}, "memo": "invoice <7>"}),
        );
        let call = spawn_tool_call(&sm, body.clone());
        let held = sm.wait_pending(ALICE, 1).await;
        let id = held[0]["id"].as_str().unwrap().to_string();
        let card = card_css(&id);
        b.wait_for(&format!("{card} [data-testid=mcp-call]")).await;
        assert_eq!(b.text_of(&format!("{card} [data-testid=mcp-server]")).await, MCP_HOST);
        assert_eq!(b.text_of(&format!("{card} [data-testid=mcp-tool]")).await, "send_payment");
        let rows = b
            .client
            .execute(
                "return [...document.querySelectorAll(arguments[0])].map(tr => [...tr.cells].map(td => td.textContent))",
                vec![json!(format!("{card} [data-testid=mcp-args] tbody tr"))],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            json!([["amount", "250"], ["to.iban", "DE89 3704"], ["to.name", "Ada"], ["memo", "invoice <7>"]]),
            "one row per argument, nested ones by path"
        );
        assert!(up.requests().is_empty(), "nothing upstream before approval");

        b.wait_for(&format!("{card} [data-testid=approve-btn]"))
            .await
            .click()
            .await
            .unwrap();
        b.wait_for(&format!("{card} [data-testid=confirm-btn]"))
            .await
            .click()
            .await
            .unwrap();
        let (status, answer) = finished(call).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(up.requests().len(), 1, "forwarded exactly once");
        assert_eq!(up.requests()[0].body, body.as_bytes());
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}

/// A list fetched before a held call arrived over SSE must not remove that
/// call's card when it lands: the pending view's list was stale, the card new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pending_list_does_not_remove_a_card_that_arrived_live() {
    require_browser();
    bounded(async {
        let (_ca, _up, sm) = api_world(MCP_POLICY, OPS, &[MCP_HOST]).await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;
        b.goto(&sm.dashboard_url("/#/history")).await;
        b.wait_for("[data-testid=history-table]").await;
        // Hold the next pending-list response (fetched at once, so stale)
        // until the test releases it.
        b.js(
            "const orig = window.fetch; \
             window.__gate = new Promise(r => { window.__release = r; }); \
             window.fetch = async (input, init) => { \
               const res = await orig(input, init); \
               const gate = window.__gate; \
               if (gate && String(input).includes('status=pending')) { window.__gate = null; window.__held = 1; await gate; } \
               return res; }; \
             return 1",
        )
        .await;
        // `first` is held while the page is elsewhere: only the list brings it.
        let _first = spawn_tool_call(&sm, tool_call_body(1, "read_file", json!({"path": "/a"})));
        let first = sm.wait_pending(ALICE, 1).await[0]["id"].as_str().unwrap().to_string();
        b.goto(&sm.dashboard_url("/#/pending")).await;
        b.wait_js("the pending list request", "return window.__held === 1", vec![]).await;
        // `second` arrives over SSE while that list is in flight.
        let _second = spawn_tool_call(&sm, tool_call_body(2, "send_payment", json!({"amount": 9})));
        let pending = sm.wait_pending(ALICE, 2).await;
        let second = pending
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .find(|id| *id != first)
            .unwrap();
        b.wait_for(&card_css(&second)).await;
        b.js("window.__release(); return 1").await;
        // The stale list is applied when `first` shows; `second` must remain.
        b.wait_for(&card_css(&first)).await;
        let left = b
            .js("return [...document.querySelectorAll('[data-testid=pending-card]')].map(c => c.dataset.requestId)")
            .await;
        let mut left: Vec<String> = serde_json::from_value(left).unwrap();
        left.sort();
        let mut want = vec![first, second];
        want.sort();
        assert_eq!(left, want, "both held calls are on the page");
        b.close().await;
    })
    .await;
}

// ------------------------------------------------------------------ bodies

/// Issue 16.10: a body that is not a form (a git push) is shown as its text,
/// not as one form key beside a one-character value column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_push_body_is_shown_as_text() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = api_world(HOLD_ALL, OPS, &["git.example.test"]).await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;
        let bot = agent_client(&sm, "billing-bot", "bot-token-1");
        let body = b"00980000000000000000000000000000000000000000 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 refs/heads/main\0 report-status side-band-64k agent=git/2.39.2\n0000PACK\0\0\0\x02\0\0\0\x03".to_vec();
        let push = tokio::spawn(async move {
            bot.post("https://git.example.test/repo.git/git-receive-pack")
                .header("content-type", "application/x-git-receive-pack-request")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        let held = sm.wait_pending(ALICE, 1).await;
        let id = held[0]["id"].as_str().unwrap().to_string();
        let sel = card_css(&id);
        b.wait_for(&sel).await;
        let text = b.text_of(&format!("{sel} [data-testid=body-text]")).await;
        assert!(text.contains("refs/heads/main") && text.contains("0000PACK"), "{text}");
        let markers = b
            .js_arg(
                "return document.querySelectorAll(arguments[0] + ' [data-testid=body-text] [data-testid=invisible-char]').length",
                json!(sel),
            )
            .await;
        assert!(markers.as_u64().unwrap_or(0) >= 2, "NUL bytes are visible: {markers}");
        let kv = b
            .js_arg(
                "return document.querySelectorAll(arguments[0] + ' .args .kv').length",
                json!(sel),
            )
            .await;
        assert_eq!(kv, json!(0), "not shown as a key/value list");
        assert!(up.requests().is_empty());
        b.assert_clean_console().await;
        b.close().await;
        push.abort();
    })
    .await;
}

// ------------------------------------------------------------------ grants and edits (SPEC §6.1, §6.2)

/// Sets a `<select>` in the page and tells the page it changed.
async fn choose(b: &Browser, css: &str, value: &str) {
    b.js_arg(
        "const [css, v] = arguments[0]; const s = document.querySelector(css); \
         s.value = v; s.dispatchEvent(new Event('change')); return s.value",
        json!([css, value]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_edits_an_amount_and_grants_an_hour_in_the_page_and_revokes_it() {
    require_browser();
    bounded(async {
        let (_ca, up, sm) = world().await;
        let b = Browser::open(1280, 900).await;
        b.login(&sm, ALICE).await;

        // Edit: $50.00 approved as $25.00, the diff shown before confirming.
        let call = spawn_charge(&sm, "amount=5000&currency=usd&description=Order%207");
        let id = sm.wait_pending(ALICE, 1).await[0]["id"].as_str().unwrap().to_string();
        let card = b.wait_for(&card_css(&id)).await;
        card.find(Locator::Css("[data-testid=edit-btn]")).await.unwrap().click().await.unwrap();
        let amount = b
            .wait_for(&format!("{} [data-testid=edit-field][data-key=amount]", card_css(&id)))
            .await;
        assert_eq!(amount.prop("value").await.unwrap().as_deref(), Some("50.00"), "edited as money");
        amount.clear().await.unwrap();
        amount.send_keys("25.00").await.unwrap();
        card.find(Locator::Css("[data-testid=approve-btn]")).await.unwrap().click().await.unwrap();
        let diff = b.wait_for(&format!("{} [data-testid=edit-diff-line]", card_css(&id))).await;
        let line = diff.text().await.unwrap();
        assert!(line.contains("$50.00") && line.contains("$25.00"), "{line}");
        let q = b.text_of(&format!("{} [data-testid=confirm-question]", card_css(&id))).await;
        assert!(q.contains("with these changes"), "{q}");
        assert!(!call.is_finished(), "the first click only shows the changes");
        b.wait_for(&format!("{} [data-testid=confirm-btn]", card_css(&id)))
            .await
            .click()
            .await
            .unwrap();
        let (status, body) = finished(call).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(up.requests().len(), 1);
        assert_eq!(up.requests()[0].body, b"amount=2500&currency=usd&description=Order%207");
        let (_, rec) = sm.api_get(&format!("/api/v1/requests/{id}"), ALICE).await;
        assert_eq!(rec["edited"], true, "{rec}");

        // Grant: approve and allow for 1 h, with at most 2 uses.
        let call = spawn_charge(&sm, "amount=700&currency=usd");
        let id = sm.wait_pending(ALICE, 1).await[0]["id"].as_str().unwrap().to_string();
        b.wait_for(&card_css(&id)).await;
        choose(&b, &format!("{} [data-testid=grant-for]", card_css(&id)), "1h").await;
        let uses = b.wait_for(&format!("{} [data-testid=grant-max-uses]", card_css(&id))).await;
        uses.send_keys("2").await.unwrap();
        b.wait_for(&format!("{} [data-testid=approve-btn]", card_css(&id))).await.click().await.unwrap();
        let q = b.text_of(&format!("{} [data-testid=confirm-question]", card_css(&id))).await;
        assert!(q.contains("1 h"), "{q}");
        b.wait_for(&format!("{} [data-testid=confirm-btn]", card_css(&id))).await.click().await.unwrap();
        assert_eq!(finished(call).await.0, 200);
        // The next charge passes at once: no card, no human.
        let (status, _) = finished(spawn_charge(&sm, "amount=701&currency=usd")).await;
        assert_eq!(status, 200);
        assert_eq!(up.requests().len(), 3);

        // The Grants page shows it (who, uses) and revokes it.
        b.goto(&sm.dashboard_url("/#/grants")).await;
        let row = b.wait_for("[data-testid=grants-active] [data-testid=grant-row]").await;
        let text = row.text().await.unwrap();
        assert!(text.contains("billing-bot") && text.contains("stripe.charges"), "{text}");
        assert!(text.contains("alice"), "{text}");
        assert_eq!(b.text_of("[data-testid=grant-uses]").await, "1 of 2");
        row.find(Locator::Css("[data-testid=revoke-btn]")).await.unwrap().click().await.unwrap();
        b.wait_js(
            "the revoked grant in the past list",
            "return document.querySelector('[data-testid=grants-past] [data-testid=grant-row]')?.dataset.state === 'revoked'",
            vec![],
        )
        .await;
        let (_, list) = sm.api_get("/api/v1/grants", ALICE).await;
        assert_eq!(list["grants"][0]["revoked_by"], "alice", "{list}");
        // Revoked: held again.
        let call = spawn_charge(&sm, "amount=702&currency=usd");
        sm.wait_pending(ALICE, 1).await;
        call.abort();
        b.assert_clean_console().await;
        b.close().await;
    })
    .await;
}
