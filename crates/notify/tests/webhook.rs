//! Webhook delivery against local receivers: signature, retries, non-blocking dispatch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sudomode_notify::{Channel, DEFAULT_RETRY_DELAYS, EventName, WebhookConfig, WebhookDispatcher};

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<AtomicUsize>,
    /// Fail (HTTP 503) this many first attempts.
    fail_first: usize,
    hang: bool,
    seen: Seen,
}

async fn start(rx: Receiver) -> String {
    let app = Router::new()
        .route(
            "/hook",
            post(|State(rx): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes| async move {
                let n = rx.hits.fetch_add(1, Ordering::SeqCst);
                rx.seen.lock().unwrap().push((headers, body.to_vec()));
                if rx.hang {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                if n < rx.fail_first { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::NO_CONTENT }
            }),
        )
        .with_state(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn hook(url: &str, secret: &str, events: Vec<EventName>) -> WebhookConfig {
    WebhookConfig {
        url: url.into(),
        secret: secret.into(),
        events,
    }
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&m| Duration::from_millis(m)).collect()
}

fn request() -> Value {
    json!({"id": "req_9", "agent": "a", "resource": "stripe.refunds", "action": "create",
           "args": {"charge": "ch_1", "amount": 2500}, "status": "pending", "approvals": []})
}

#[tokio::test]
async fn delivery_is_signed_and_verifiable() {
    let rx = Receiver::default();
    let url = start(rx.clone()).await;
    let other = Receiver::default();
    let other_url = start(other.clone()).await;
    let d = WebhookDispatcher::new(vec![
        hook(&url, "whsec_test", EventName::all()),
        hook(&other_url, "x", vec![EventName::Approved]),
    ])
    .unwrap();
    let handles = d.dispatch(EventName::Pending, &request());
    assert_eq!(
        handles.len(),
        1,
        "only subscribed webhooks receive the event"
    );
    for h in handles {
        assert!(h.await.unwrap());
    }
    assert_eq!(other.hits.load(Ordering::SeqCst), 0);
    let seen = rx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["content-type"], "application/json");
    let sig = headers["x-sudomode-signature"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
    mac.update(body);
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let mut wrong = Hmac::<Sha256>::new_from_slice(b"other").unwrap();
    wrong.update(body);
    assert_ne!(
        sig,
        format!("sha256={}", hex::encode(wrong.finalize().into_bytes()))
    );
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v, json!({"event": "pending", "request": request()}));
    assert!(sudomode_notify::verify_webhook_signature(
        "whsec_test",
        sig,
        body
    ));
    assert_eq!(d.stats().get(Channel::Webhook, true), 1);
}

#[tokio::test]
async fn retries_until_success() {
    let rx = Receiver {
        fail_first: 2,
        ..Receiver::default()
    };
    let url = start(rx.clone()).await;
    let d = WebhookDispatcher::new(vec![hook(&url, "s", EventName::all())])
        .unwrap()
        .with_retry_delays(ms(&[10, 20, 50, 100, 200]));
    let handles = d.dispatch(EventName::Approved, &request());
    assert!(handles.into_iter().next().unwrap().await.unwrap());
    assert_eq!(rx.hits.load(Ordering::SeqCst), 3);
    // Every attempt carries the same signed bytes.
    let seen = rx.seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1
            && w[0].0["x-sudomode-signature"] == w[1].0["x-sudomode-signature"])
    );
    assert_eq!(d.stats().get(Channel::Webhook, true), 1);
    assert_eq!(d.stats().get(Channel::Webhook, false), 0);
}

#[tokio::test]
async fn gives_up_after_the_bound() {
    let rx = Receiver {
        fail_first: usize::MAX,
        ..Receiver::default()
    };
    let url = start(rx.clone()).await;
    let d = WebhookDispatcher::new(vec![hook(&url, "s", EventName::all())])
        .unwrap()
        .with_retry_delays(ms(&[5, 10, 15, 20, 25]));
    let started = Instant::now();
    let handles = d.dispatch(EventName::Rejected, &request());
    assert!(!handles.into_iter().next().unwrap().await.unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(75),
        "gaps are honoured"
    );
    // First attempt plus 5 retries, then nothing more.
    assert_eq!(rx.hits.load(Ordering::SeqCst), 6);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits.load(Ordering::SeqCst), 6);
    assert_eq!(d.stats().get(Channel::Webhook, false), 1);
    assert_eq!(d.stats().get(Channel::Webhook, true), 0);
}

#[tokio::test]
async fn unreachable_receiver_also_retries() {
    // Bind then drop to get a closed port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    drop(l);
    let d = WebhookDispatcher::new(vec![hook(&url, "s", EventName::all())])
        .unwrap()
        .with_retry_delays(ms(&[1, 1]));
    let h = d.dispatch(EventName::Denied, &request());
    assert!(!h.into_iter().next().unwrap().await.unwrap());
    assert_eq!(d.stats().get(Channel::Webhook, false), 1);
}

#[tokio::test]
async fn dispatch_never_blocks_on_a_hanging_receiver() {
    let rx = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let url = start(rx.clone()).await;
    let d = WebhookDispatcher::new(vec![hook(&url, "s", EventName::all())])
        .unwrap()
        .with_timeout(Duration::from_millis(200))
        .unwrap()
        .with_retry_delays(ms(&[10]));
    let started = Instant::now();
    let handles = d.dispatch(EventName::Expired, &request());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "dispatch returned in {:?}",
        started.elapsed()
    );
    assert_eq!(handles.len(), 1);
    // The attempts time out (200 ms each) instead of hanging for the receiver's 60 s.
    let ok = tokio::time::timeout(Duration::from_secs(5), handles.into_iter().next().unwrap())
        .await
        .expect("delivery bounded by the timeout")
        .unwrap();
    assert!(!ok);
    assert_eq!(rx.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn default_schedule_grows_within_a_minute() {
    assert_eq!(DEFAULT_RETRY_DELAYS.len(), 5);
    assert!(DEFAULT_RETRY_DELAYS.windows(2).all(|w| w[0] < w[1]));
    let total: Duration = DEFAULT_RETRY_DELAYS.iter().sum();
    assert!(total <= Duration::from_secs(60));
}
