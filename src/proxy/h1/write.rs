//! One response onto the agent's connection: the head, then the body framed
//! by `Content-Length`, chunked, or (HTTP/1.0) by the close. What is ready is
//! written together; what is buffered is flushed whenever the body has
//! nothing more ready, so streamed answers (SSE) arrive as they come.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::head::content_length;
use crate::proxy::{BoxError, ProxyBody};

/// What the answer depends on in the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub head_method: bool,
    pub http10: bool,
    pub keep_alive: bool,
}

/// Data frames at least this large are written as they are, not copied.
const COPY_BELOW: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Writes `resp`; returns whether the connection may carry another request.
pub async fn write<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: Response<ProxyBody>,
    asked: Asked,
) -> std::io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let out = framing(parts.status, &parts.headers, &body, asked);
    let keep = asked.keep_alive && out != Out::UntilClose;
    let mut buf = Vec::with_capacity(256);
    head(
        &mut buf,
        parts.status,
        &parts.headers,
        out,
        keep,
        asked.http10,
    );
    if out == Out::NoBody {
        io.write_all(&buf).await?;
        io.flush().await?;
        return Ok(keep);
    }
    let mut sent: u64 = 0;
    let mut whole = true;
    loop {
        let frame = match ready_frame(&mut body).await {
            Some(f) => f,
            None => {
                flush(io, &mut buf).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                Err(_trailers) => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "the response body failed midway; closing");
                whole = false;
                break;
            }
        };
        let data = match out {
            Out::Length(n) if sent + data.len() as u64 > n => {
                whole = false;
                data.slice(..(n - sent) as usize)
            }
            _ => data,
        };
        sent += data.len() as u64;
        push(io, &mut buf, out, data).await?;
        if !whole {
            break;
        }
    }
    if whole && out == Out::Chunked {
        buf.extend_from_slice(b"0\r\n\r\n");
    }
    flush(io, &mut buf).await?;
    let complete = whole && !matches!(out, Out::Length(n) if sent != n);
    Ok(keep && complete)
}

fn framing(status: StatusCode, headers: &HeaderMap, body: &ProxyBody, asked: Asked) -> Out {
    if asked.head_method
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Out::NoBody;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| content_length(v.as_bytes()));
    match (declared, body.size_hint().exact()) {
        (Some(n), _) | (None, Some(n)) => Out::Length(n),
        _ if asked.http10 => Out::UntilClose,
        _ => Out::Chunked,
    }
}

fn head(
    buf: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    out: Out,
    keep: bool,
    http10: bool,
) {
    status_line(buf, status);
    for (name, value) in headers {
        // This hop's framing and connection headers are ours to write.
        let ours = name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == "keep-alive"
            || (name == header::CONTENT_LENGTH && out != Out::NoBody);
        if !ours {
            line(buf, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !headers.contains_key(header::DATE) {
        date(buf);
    }
    match out {
        Out::Length(n) => {
            let _ = write!(buf, "content-length: {n}\r\n");
        }
        Out::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::NoBody | Out::UntilClose => {}
    }
    if !keep {
        buf.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        buf.extend_from_slice(b"connection: keep-alive\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 404 Not Found` and its CRLF.
pub(super) fn status_line(buf: &mut Vec<u8>, status: StatusCode) {
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(buf, "HTTP/1.1 {} {reason}\r\n", status.as_str());
}

fn line(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// `Date` (RFC 9110 §6.6.1), formatted once a second per thread.
fn date(buf: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        line(buf, b"date", text.as_bytes());
    });
}

/// The next frame if the body has one ready now (`None` if it must be
/// waited for).
async fn ready_frame(body: &mut ProxyBody) -> Option<Option<Result<Frame<Bytes>, BoxError>>> {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(f) => Some(f),
            Poll::Pending => None,
        })
    })
    .await
}

async fn push<S: AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    out: Out,
    data: Bytes,
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if out == Out::Chunked {
        let _ = write!(buf, "{:x}\r\n", data.len());
    }
    if data.len() >= COPY_BELOW {
        io.write_all(buf).await?;
        buf.clear();
        io.write_all(&data).await?;
    } else {
        buf.extend_from_slice(&data);
    }
    if out == Out::Chunked {
        buf.extend_from_slice(b"\r\n");
    }
    if buf.len() >= COPY_BELOW {
        io.write_all(buf).await?;
        buf.clear();
    }
    Ok(())
}

async fn flush<S: AsyncWrite + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if !buf.is_empty() {
        io.write_all(buf).await?;
        buf.clear();
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::respond;
    use http_body_util::StreamBody;
    use tokio::io::AsyncReadExt;

    async fn written(resp: Response<ProxyBody>, asked: Asked) -> (String, bool) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let keep = write(&mut server, resp, asked).await.unwrap();
        drop(server);
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        (text, keep)
    }

    const GET11: Asked = Asked {
        head_method: false,
        http10: false,
        keep_alive: true,
    };

    #[tokio::test]
    async fn a_sized_body_gets_its_length_and_a_date() {
        let mut resp = Response::new(respond::full("hello"));
        resp.headers_mut().insert("x-a", "1".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "keep-alive".parse().unwrap());
        let (text, keep) = written(resp, GET11).await;
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("content-length: 5\r\n\r\nhello"), "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
        assert!(keep);
    }

    #[tokio::test]
    async fn a_streamed_body_is_chunked_or_delimited_by_the_close() {
        let stream = || {
            let frames = ["ab", "", "cde"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from(s))));
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        };
        let (text, keep) = written(Response::new(stream()), GET11).await;
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(keep);
        let http10 = Asked {
            http10: true,
            ..GET11
        };
        let (text, keep) = written(Response::new(stream()), http10).await;
        assert!(text.ends_with("connection: close\r\n\r\nabcde"), "{text}");
        assert!(!keep);
    }

    #[tokio::test]
    async fn head_and_no_content_answers_carry_no_body() {
        let mut resp = Response::new(respond::empty());
        resp.headers_mut()
            .insert("content-length", "42".parse().unwrap());
        let head = Asked {
            head_method: true,
            ..GET11
        };
        let (text, keep) = written(resp, head).await;
        assert!(text.contains("\r\ncontent-length: 42\r\n"), "{text}");
        assert!(text.ends_with("GMT\r\n\r\n"), "{text}");
        assert!(keep);
        let mut resp = Response::new(respond::full("x"));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let (text, _) = written(resp, GET11).await;
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_or_overruns_its_length_closes_the_connection() {
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from("ab"))),
            Err::<Frame<Bytes>, BoxError>("upstream reset".into()),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let (text, keep) = written(Response::new(body), GET11).await;
        assert!(text.ends_with("2\r\nab\r\n"), "no last chunk: {text}");
        assert!(!keep);
        let mut resp = Response::new(respond::full("abcdef"));
        resp.headers_mut()
            .insert("content-length", "3".parse().unwrap());
        let (text, keep) = written(resp, GET11).await;
        assert!(text.ends_with("content-length: 3\r\n\r\nabc"), "{text}");
        assert!(!keep);
    }
}
