//! The listener `axum::serve` accepts connections from: plain TCP, with
//! hyper's own parse-error answers rewritten as the API's JSON refusals.
//!
//! A request hyper cannot parse (a garbage request line, a URI over 65 534
//! bytes, more than 100 headers or a head over about 400 KiB) never reaches
//! axum: hyper answers it itself with a bare 400, 414 or 431 head
//! (`content-length: 0`) and closes the connection. hyper has no hook for
//! that answer, so each connection's stream ([`JsonErrors`]) recognises it
//! on the way out and writes, in its place, the same head with the API's
//! JSON body (`{"error": ..., "status": ...}`, [`super::error::body`]).
//!
//! What it recognises: one write that is exactly one response head, with
//! status 400, 414 or 431, `content-length: 0` and no content type. The
//! app's own 400s always carry a JSON body (and it never sends 414 or 431),
//! and no body it sends holds a bare CRLF pair (JSON escapes them), so
//! nothing else matches. Everything else passes through untouched; were
//! hyper ever to split its head over two writes, the answer would simply
//! stay hyper's empty one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections answer parse errors in JSON. Accepting
/// (and riding out accept errors) is axum's own `TcpListener` listener.
pub struct JsonErrorListener(pub TcpListener);

impl axum::serve::Listener for JsonErrorListener {
    type Io = JsonErrors<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonErrors::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A stream that passes everything through, except hyper's bare
/// parse-error head, which it replaces with a JSON answer. It takes no
/// vectored writes, so every byte hyper sends comes through `poll_write`
/// (hyper copies a head and its body into one buffer instead).
pub struct JsonErrors<S> {
    inner: S,
    /// The replacement answer, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> JsonErrors<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let rest = &self.pending[self.written..];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = json_answer(buf) {
            // Taken whole; written by the flush hyper always sends next.
            this.pending = answer;
            this.written = 0;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// What each of hyper's parse-error statuses means, in plain words.
fn message(status: StatusCode) -> Option<&'static str> {
    Some(match status {
        StatusCode::BAD_REQUEST => {
            "the request is not valid HTTP: a malformed request line or header"
        }
        StatusCode::URI_TOO_LONG => {
            "the request's URI is over 65534 bytes, the longest the server reads"
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request's headers are too large: more than 100 of them, or over about 400 KiB"
        }
        _ => return None,
    })
}

/// hyper's head is about 100 bytes; anything much longer is not it.
const MAX_HEAD: usize = 1024;

/// If `bytes` is exactly hyper's bare parse-error head, the answer to
/// write instead: the same status line and headers, with a JSON body.
fn json_answer(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() > MAX_HEAD || !bytes.starts_with(b"HTTP/1.") {
        return None;
    }
    let head = std::str::from_utf8(bytes).ok()?.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.split(' ').nth(1)?;
    let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
    let message = message(status)?;
    let headers: Vec<(&str, &str)> = lines
        .map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect::<Option<_>>()?;
    let values = |name: &str| -> Vec<&str> {
        let named = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        named.map(|(_, v)| *v).collect()
    };
    if values("content-length") != ["0"] || !values("content-type").is_empty() {
        return None;
    }
    let body = serde_json::to_vec(&super::error::body(status, message)).ok()?;
    let mut out = format!("{status_line}\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("content-length") {
            out.push_str("content-type: application/json\r\n");
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        } else {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Thu, 04 Dec 2025 17:00:00 GMT";

    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_bare_heads_become_json() {
        for (line, status) in [
            ("HTTP/1.1 400 Bad Request", 400),
            ("HTTP/1.1 414 URI Too Long", 414),
            ("HTTP/1.0 431 Request Header Fields Too Large", 431),
        ] {
            let bare =
                format!("{line}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n\r\n");
            let answer = json_answer(bare.as_bytes()).unwrap();
            let (head, j) = split(&answer);
            assert_eq!(j["status"], status);
            assert!(!j["error"].as_str().unwrap().is_empty());
            let body_len = answer.len() - head.len() - 4;
            assert_eq!(
                head,
                format!("{line}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {body_len}\r\n{DATE}")
            );
        }
    }

    #[test]
    fn everything_else_passes_through() {
        for bytes in [
            // The app's own 400, with its body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            // A head with a body length, or a content type.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            // Not one of hyper's statuses.
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            // Half a head, two heads, a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            "{\"error\": \"HTTP/1.1 400 Bad Request\"}",
        ] {
            assert!(json_answer(bytes.as_bytes()).is_none(), "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn the_replacement_is_written_before_the_flush_returns() {
        use std::future::poll_fn;
        let bare = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{DATE}\r\n\r\n");
        let mut s = JsonErrors::new(Vec::new());
        let n = poll_fn(|cx| Pin::new(&mut s).poll_write(cx, bare.as_bytes())).await;
        assert_eq!(n.unwrap(), bare.len());
        assert!(s.inner.is_empty(), "held until the flush");
        poll_fn(|cx| Pin::new(&mut s).poll_flush(cx)).await.unwrap();
        assert_eq!(s.inner, json_answer(bare.as_bytes()).unwrap());
        let next = b"HTTP/1.1 200 OK\r\n";
        poll_fn(|cx| Pin::new(&mut s).poll_write(cx, next))
            .await
            .unwrap();
        assert!(s.inner.ends_with(b"}HTTP/1.1 200 OK\r\n"));
    }
}
