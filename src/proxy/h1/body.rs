//! A request body read whole, as the judge needs it: by `Content-Length` or
//! chunked (RFC 9112 §7.1, strict: CRLF only, no size overflow, bounded
//! lines and trailers), within `proxy.max_body_bytes` and
//! `proxy.read_timeout`.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::head::Framing;

/// What the connection got of a request body; the handler turns anything
/// but `Complete` into the agent's refusal.
#[derive(Debug)]
pub enum Received {
    Complete(Bytes),
    /// Over the limit: not read further.
    TooLarge,
    TimedOut,
    Broken(String),
}

/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 4096;
/// All trailer lines together.
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes asked of the connection per read while a body arrives.
const READ_SIZE: usize = 16 * 1024;

/// Reads the body framed by `framing`, starting with the bytes already in
/// `buf`; whatever follows it (a pipelined request) stays in `buf`.
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    framing: Framing,
    limit: usize,
    within: Duration,
) -> Received {
    let reading = async {
        match framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Length(n) => by_length(io, buf, n, limit).await,
            Framing::Chunked => chunked(io, buf, limit).await,
        }
    };
    match tokio::time::timeout(within, reading).await {
        Err(_) => Received::TimedOut,
        Ok(Ok(b)) => Received::Complete(b),
        Ok(Err(Stop::TooLarge)) => Received::TooLarge,
        Ok(Err(Stop::Broken(why))) => Received::Broken(why),
    }
}

/// Whether the body is known to be over `limit` before reading it (a
/// declared length; a chunked body is counted as it arrives).
pub fn over(framing: Framing, limit: usize) -> bool {
    matches!(framing, Framing::Length(n) if n > limit as u64)
}

#[derive(Debug, PartialEq, Eq)]
enum Stop {
    TooLarge,
    Broken(String),
}

fn broken(why: impl Into<String>) -> Stop {
    Stop::Broken(why.into())
}

async fn more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Result<(), Stop> {
    buf.reserve(READ_SIZE);
    match io.read_buf(buf).await {
        Ok(0) => Err(broken("the connection closed before the body ended")),
        Ok(_) => Ok(()),
        Err(e) => Err(broken(e.to_string())),
    }
}

async fn by_length<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    n: u64,
    limit: usize,
) -> Result<Bytes, Stop> {
    if over(Framing::Length(n), limit) {
        return Err(Stop::TooLarge);
    }
    let n = usize::try_from(n).map_err(|_| Stop::TooLarge)?;
    while buf.len() < n {
        more(io, buf).await?;
    }
    let rest = buf.split_off(n);
    Ok(Bytes::from(std::mem::replace(buf, rest)))
}

async fn chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<Bytes, Stop> {
    let mut dec = Dechunk::new(limit);
    loop {
        let used = dec.feed(buf)?;
        buf.drain(..used);
        if dec.done() {
            return Ok(Bytes::from(std::mem::take(&mut dec.body)));
        }
        more(io, buf).await?;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// The chunked decoder: fed whatever bytes have arrived, it consumes what it
/// can and keeps the decoded body.
struct Dechunk {
    state: State,
    body: Vec<u8>,
    limit: usize,
}

impl Dechunk {
    fn new(limit: usize) -> Self {
        Self {
            state: State::Size,
            body: Vec::new(),
            limit,
        }
    }

    fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes from the front of `input`; returns how many bytes it used.
    fn feed(&mut self, input: &[u8]) -> Result<usize, Stop> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Size | State::Trailers(_) => {
                    let Some(line) = line(rest)? else {
                        return Ok(at);
                    };
                    at += line.len() + 2;
                    self.on_line(line)?;
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body.extend_from_slice(&rest[..take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(broken("a chunk is longer than its size says"));
                    }
                    at += 2;
                    self.state = State::Size;
                }
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), Stop> {
        match self.state {
            State::Size => {
                let size = chunk_size(line)?;
                if size == 0 {
                    self.state = State::Trailers(0);
                    return Ok(());
                }
                let room = (self.limit - self.body.len()) as u64;
                if size > room {
                    return Err(Stop::TooLarge);
                }
                self.state = State::Data(size);
            }
            // Trailers are read and dropped: the judge and the upstream see
            // the body alone, as for any other framing.
            State::Trailers(seen) => {
                let seen = seen + line.len() + 2;
                if seen > MAX_TRAILERS {
                    return Err(broken("the chunked trailers are too long"));
                }
                self.state = if line.is_empty() {
                    State::Done
                } else {
                    State::Trailers(seen)
                };
            }
            _ => {}
        }
        Ok(())
    }
}

/// The next CRLF-terminated line (without it), `None` until it has arrived.
fn line(rest: &[u8]) -> Result<Option<&[u8]>, Stop> {
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match memchr::memchr(b'\n', window) {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => Ok(Some(&rest[..i - 1])),
        Some(_) => Err(broken("a chunked line does not end in CRLF")),
        None if rest.len() > MAX_LINE => Err(broken("a chunked line is too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" extensions ]`; the extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, Stop> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(broken("invalid chunk size"));
    }
    let after = line[digits..].trim_ascii_start();
    if !(after.is_empty() || after.starts_with(b";")) {
        return Err(broken("invalid chunk size"));
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| broken("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| broken("invalid chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize), Stop> {
        let mut d = Dechunk::new(limit);
        let used = d.feed(input)?;
        assert!(d.done(), "not done after {used} bytes");
        Ok((d.body, used))
    }

    #[test]
    fn chunks_trailers_and_extensions_decode() {
        let (body, used) = whole(
            b"7\r\namount=\r\n5;x=y\r\n99999\r\n0\r\nX-T: 1\r\n\r\nNEXT",
            100,
        )
        .unwrap();
        assert_eq!(body, b"amount=99999");
        assert_eq!(used, 39);
    }

    #[test]
    fn decoding_is_the_same_byte_by_byte() {
        let input = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let mut d = Dechunk::new(100);
        let mut pending = Vec::new();
        for b in input {
            pending.push(*b);
            let used = d.feed(&pending).unwrap();
            pending.drain(..used);
        }
        assert!(d.done());
        assert_eq!(d.body, b"abc0123456789abcdef");
    }

    #[test]
    fn broken_chunking_is_refused() {
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"ffffffffffffffffff\r\nabc\r\n",
            b"3\r\nabcdef\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"\r\n",
        ] {
            let mut d = Dechunk::new(1 << 20);
            assert!(
                matches!(d.feed(bad), Err(Stop::Broken(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"1".repeat(MAX_LINE + 10), b"\r\n".to_vec()].concat();
        assert!(Dechunk::new(100).feed(&long).is_err());
    }

    #[test]
    fn the_limit_counts_decoded_bytes() {
        assert_eq!(whole(b"5\r\nabcde\r\n0\r\n\r\n", 5).unwrap().0, b"abcde");
        assert_eq!(
            Dechunk::new(4).feed(b"5\r\nabcde\r\n0\r\n\r\n"),
            Err(Stop::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_body_arrives_in_pieces_and_leaves_the_next_request() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in [&b"abc"[..], b"defGET / HTTP/1.1\r\n"] {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let within = Duration::from_secs(5);
        let mut buf = b"12".to_vec();
        let got = read(&mut server, &mut buf, Framing::Length(8), 100, within).await;
        let Received::Complete(b) = got else {
            panic!("{got:?}")
        };
        assert_eq!(&b[..], b"12abcdef");
        assert!(buf.starts_with(b"GET"));
        drop(writer.await.unwrap());
        let got = read(
            &mut server,
            &mut Vec::new(),
            Framing::Length(8),
            100,
            within,
        )
        .await;
        assert!(matches!(got, Received::Broken(_)), "{got:?}");
        let got = read(
            &mut server,
            &mut Vec::new(),
            Framing::Length(101),
            100,
            within,
        )
        .await;
        assert!(matches!(got, Received::TooLarge), "{got:?}");
    }
}
