//! HTTP/1.x inside an intercepted tunnel, served without hyper so that a
//! parked (held) request keeps no read or write buffer: between reads the
//! connection's only state is its TLS session, the bytes of a pipelined
//! next request if any, and the handler's future. Heads are parsed by
//! `httparse` (`head`), bodies read whole for the judge (`body`), answers
//! framed and written by `write`. HTTP/2 stays with hyper.

mod body;
mod head;
pub(crate) use head::chunked;
mod rewind;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use body::Received;
use head::{Framing, HeadError};
pub use rewind::Rewind;
use write::Asked;

use super::ProxyBody;

/// What bounds one connection (from `proxy.*`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Waiting for a whole head, idle keep-alive time included.
    pub head_timeout: Duration,
    pub max_head: usize,
    pub body_limit: usize,
    pub body_timeout: Duration,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed,
    /// The client opened with HTTP/2's preface (prior knowledge, no ALPN):
    /// these bytes were read and belong to hyper's HTTP/2 server.
    Http2(Vec<u8>),
}

/// HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Room asked of the connection for a head.
const HEAD_READ: usize = 4096;

/// Serves requests on `io` one after another until either side closes.
pub async fn serve<S, H, F>(io: &mut S, limits: Limits, mut handler: H) -> std::io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<Received>) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Each phase boxed, as the handler and the writer: this loop's future
        // lives as long as the connection, at the size of its largest state.
        let read = Box::pin(tokio::time::timeout(
            limits.head_timeout,
            read_head(io, &mut buf, limits.max_head),
        ));
        let head = match read.await {
            // Idle or too slow: hyper's header timer closed such connections
            // without an answer too.
            Err(_) => return Ok(Ended::Closed),
            Ok(Ok(Next::Head(h))) => h,
            Ok(Ok(Next::Eof)) => return Ok(Ended::Closed),
            Ok(Ok(Next::Http2)) => return Ok(Ended::Http2(buf)),
            Ok(Ok(Next::Bad(e))) => {
                tracing::debug!(error = %e, "malformed request in an intercepted connection");
                reject(io, e.status()).await;
                return Ok(Ended::Closed);
            }
            Ok(Err(e)) => return Err(e),
        };
        let head::Head {
            parts,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        if expect_continue && framing != Framing::Empty && !body::over(framing, limits.body_limit) {
            io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            io.flush().await?;
        }
        let received = Box::pin(body::read(
            io,
            &mut buf,
            framing,
            limits.body_limit,
            limits.body_timeout,
        ))
        .await;
        if buf.is_empty() {
            // A parked request keeps no read buffer.
            buf = Vec::new();
        }
        let asked = Asked {
            head_method: parts.method == http::Method::HEAD,
            http10: parts.version == http::Version::HTTP_10,
            // A body not read to its end leaves the connection's framing unknown.
            keep_alive: keep_alive && matches!(received, Received::Complete(_)),
        };
        let req = Request::from_parts(parts, received);
        // Boxed: only the box's pointer sits in this future's (padded) layout.
        let mut handling = Box::pin(handler(req));
        let Some(resp) = answer(io, &mut buf, handling.as_mut()).await else {
            return Ok(Ended::Closed);
        };
        if !Box::pin(write::write(io, resp, asked)).await? {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

// Built once per request and taken apart at once: boxing the head would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(head::Head),
    Eof,
    Http2,
    Bad(HeadError),
}

async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Next> {
    loop {
        if buf.starts_with(PREFACE) {
            return Ok(Next::Http2);
        }
        let maybe_preface = PREFACE.starts_with(&buf[..buf.len().min(PREFACE.len())]);
        if !buf.is_empty() && !maybe_preface {
            match head::parse(buf, max) {
                Ok(Some((head, used))) => {
                    buf.drain(..used);
                    return Ok(Next::Head(head));
                }
                Ok(None) => {}
                Err(e) => return Ok(Next::Bad(e)),
            }
        }
        if buf.capacity() - buf.len() < HEAD_READ / 4 {
            buf.reserve(HEAD_READ);
        }
        if io.read_buf(buf).await? == 0 {
            return Ok(Next::Eof);
        }
    }
}

/// The handler's answer; `None` when the agent closed the connection first
/// (the handler's future is then dropped, as hyper did, and its guards
/// record the ending). Bytes the agent sends meanwhile (a pipelined request)
/// are kept for the next turn.
async fn answer<S, F>(
    io: &mut S,
    buf: &mut Vec<u8>,
    mut handling: Pin<&mut F>,
) -> Option<Response<ProxyBody>>
where
    S: AsyncRead + Unpin,
    F: Future<Output = Response<ProxyBody>>,
{
    if !buf.is_empty() {
        return Some(handling.await);
    }
    let mut one = [0u8; 1];
    tokio::select! {
        biased;
        resp = handling.as_mut() => return Some(resp),
        read = io.read(&mut one) => match read {
            Ok(1) => buf.push(one[0]),
            _ => return None,
        },
    }
    Some(handling.await)
}

/// A bare error answer for a request that never became one, then the close.
async fn reject<S: AsyncWrite + Unpin>(io: &mut S, status: StatusCode) {
    let mut head = Vec::with_capacity(96);
    write::status_line(&mut head, status);
    head.extend_from_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
    let _ = io.write_all(&head).await;
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests;
