//! The library in-process: SudoMode started inside the test (`app::start`),
//! its operator router exercised with `tower::ServiceExt::oneshot`, and the
//! request path driven through its proxy listener against a stand-in upstream.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const POLICY: &str = r#"
rules:
  - name: charges_need_a_human
    resource: stripe.charges
    action: create
    decision: REQUIRE_APPROVAL
    reason: money movement
  - name: deploys_need_a_human
    resource: deploy
    action: run
    decision: REQUIRE_APPROVAL
    reason: production
  - name: reads
    resource: "*"
    action: [retrieve, list, get]
    decision: ALLOW
    reason: reads are fine
"#;

struct World {
    running: sudomode::app::Running,
    router: axum::Router,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
    _up: Upstream,
}

async fn world() -> World {
    install_crypto();
    let ca = TestCa::new("Upstream Test CA");
    let up = Upstream::https(&ca, &["api.stripe.com"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("upstream-ca.pem"), &ca.pem).unwrap();
    let yaml = format!(
        "proxy: {{listen: 127.0.0.1:0}}\ndashboard: {{listen: 127.0.0.1:0}}\n\
         operators:\n  - {{name: alice, token: alice-token-1, role: approver}}\n\
         agents:\n  - {{name: bot, token: bot-token-1}}\n\
         upstream:\n  ca_files: [upstream-ca.pem]\n  resolve: {{\"api.stripe.com:443\": \"{}\"}}\n",
        up.addr
    );
    let config = sudomode::config::Config::parse(&yaml, None, dir.path(), "test.yaml").unwrap();
    let running = sudomode::app::start(config).await.unwrap();
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let router = sudomode::dashboard::router(running.state.clone(), rx);
    World {
        running,
        router,
        _shutdown: shutdown,
        _dir: dir,
        _up: up,
    }
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header("host", "127.0.0.1");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, token: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn operator_router_in_process() {
    let w = world().await;
    let (s, v) = call(&w.router, get("/healthz", None)).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));

    let (s, v) = call(&w.router, get("/api/v1/requests", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["type"], "unauthorized");

    let (s, v) = call(&w.router, get("/api/v1/requests", Some("bot-token-1"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "agent tokens are refused: {v}");

    let (s, v) = call(
        &w.router,
        post("/api/v1/requests/nope/approve", "alice-token-1", json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["type"], "not_found");

    // An explicit intent through the same core as the proxy.
    let (s, v) = call(
        &w.router,
        post(
            "/v1/govern",
            "bot-token-1",
            json!({"resource": "deploy", "action": "run", "args": {"env": "prod"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "REQUIRE_APPROVAL", "{v}");
    let id = v["request_id"].as_str().unwrap().to_string();

    let (s, v) = call(
        &w.router,
        post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({"reason": "ok"}),
        ),
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("approved"))
    );

    let (s, v) = call(
        &w.router,
        get(&format!("/v1/requests/{id}"), Some("bot-token-1")),
    )
    .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("APPROVED"))
    );

    let (s, v) = call(
        &w.router,
        post(
            &format!("/api/v1/requests/{id}/approve"),
            "alice-token-1",
            json!({}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    w.running.stop().await;
}

#[tokio::test]
async fn request_path_in_process() {
    let w = world().await;
    let ca = std::fs::read_to_string(&w.running.proxy.ca.paths.cert).unwrap();
    let client = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://bot:bot-token-1@{}", w.running.proxy_addr))
                .unwrap(),
        )
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let resp = client
        .get("https://api.stripe.com/v1/customers/cus_1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-sudomode-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The ending is queued: poll until it lands.
    let mut v = Value::Null;
    for _ in 0..100 {
        (_, v) = call(
            &w.router,
            get(&format!("/api/v1/requests/{id}"), Some("alice-token-1")),
        )
        .await;
        if v["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["upstream_status"], 200);
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["request.decided", "request.forwarded"]);
    w.running.stop().await;
}
