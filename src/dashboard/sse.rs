//! `GET /api/v1/events`: Server-Sent Events, one `request` event per
//! request change, as recorded (SPEC §8, §9). A stream opened with a
//! dashboard session ends when that session is signed out or expires.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::future::ready;
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::Dash;
use super::api::request_json;
use super::auth::{Operator, SessionEnd};

/// Resolves when the stream's session is signed out or expires; never for
/// an operator token.
async fn session_over(session: Option<SessionEnd>) {
    let Some(SessionEnd { expires, mut ended }) = session else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = ended.wait_for(|over| *over) => {}
        () = tokio::time::sleep_until(expires.into()) => {}
    }
}

pub async fn events(
    AxState(dash): AxState<Arc<Dash>>,
    op: Operator,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    tracing::debug!(operator = %op.name, "event stream opened");
    let rx = dash.state.core.recorder.subscribe();
    let mut shutdown = dash.shutdown.clone();
    let session_over = session_over(op.session);
    let stop = async move {
        tokio::select! {
            // A dropped sender also ends the stream: nothing more will come.
            _ = shutdown.wait_for(|stopping| *stopping) => {}
            () = session_over => {}
        }
    };
    let stream = BroadcastStream::new(rx)
        // A slow client that lagged has missed changes: end the stream, and
        // the browser's EventSource reconnects and resynchronises on open.
        .take_while(|item| ready(item.is_ok()))
        .filter_map(|item| {
            let event = item.ok().and_then(|r| {
                Event::default()
                    .event("request")
                    .json_data(request_json(&r))
                    .ok()
            });
            ready(event.map(Ok))
        })
        // Graceful shutdown waits for open connections; endless streams must end.
        .take_until(Box::pin(stop));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
