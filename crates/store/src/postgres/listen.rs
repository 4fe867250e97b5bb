//! Other replicas' changes: a dedicated connection LISTENs on the change
//! channel (and on the replicas' own, `peers`); each notification names the requests another replica changed,
//! which are read back and announced on the change feeds (SSE, and the hold
//! registry for held requests). The connection is re-made with backoff when
//! lost; notifications missed meanwhile only delay the registry, which also
//! re-checks its held requests periodically.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::append::{CHANNEL, parse_payload};
use super::connect::Failure;
use super::peers::PEER_CHANNEL;
use super::{Postgres, Shared};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) async fn run(shared: Weak<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        match listen(strong, &mut stop).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Lost) => backoff = Duration::from_millis(100),
            Err(f) => {
                if let Some(s) = shared.upgrade() {
                    tracing::debug!(error = %s.scrub(&f.message), "PostgreSQL change listener: reconnecting");
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

enum Ended {
    Stopped,
    Lost,
}

async fn listen(shared: Arc<Shared>, stop: &mut watch::Receiver<bool>) -> Result<Ended, Failure> {
    let (client, mut connection) = shared
        .target
        .config
        .connect(shared.target.tls.clone())
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The connection must be polled for the client to make progress; its
    // messages are the notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            if tx.send(m).is_err() {
                return;
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {PEER_CHANNEL}"))
        .await?;
    tracing::debug!("PostgreSQL change listener connected");
    let pg = Postgres { shared };
    let ended = loop {
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = stop.changed() => break Ended::Stopped,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == PEER_CHANNEL => {
                pg.peer_message(n.payload())
            }
            Some(Ok(AsyncMessage::Notification(n))) => pg.announce(n.payload()).await,
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(Failure::from(e))?,
            None => break Ended::Lost,
        }
    };
    driver.abort();
    Ok(ended)
}

impl Postgres {
    /// Reads back what another replica changed, when someone here wants it.
    async fn announce(&self, payload: &str) {
        let Some(entries) = parse_payload(payload, &self.shared.replica) else {
            return;
        };
        let feeds = &self.shared.feeds;
        let ids: Vec<String> = entries
            .into_iter()
            .filter(|(_, held)| feeds.wants_remote(*held))
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            return;
        }
        match self.get_requests(&ids).await {
            Ok(records) => feeds.remote(records),
            Err(e) => {
                tracing::warn!(error = %e, "reading requests changed by another replica failed")
            }
        }
    }
}
