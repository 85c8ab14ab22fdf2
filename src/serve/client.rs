//! A small blocking HTTP/1.1 client for loopback, used by the load check
//! (`vla-demo bench --serve-load`) and the tests: one request per
//! connection, `Connection: close`, the whole answer read into memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` raw, and reads the answer: for tests that need odd requests.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8], timeout: Duration) -> Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())?;
    // The server may answer (413, 503) before it reads the body; then the
    // write fails, and the answer is still there to read.
    let _ = s.write_all(body);
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).or_else(|e| {
        if bytes.is_empty() {
            Err(e)
        } else {
            Ok(bytes.len())
        }
    })?;
    parse(&bytes)
}

/// A GET.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Answer> {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}"),
        &[],
        timeout,
    )
}

/// A multipart/form-data POST: text fields, and files as (name, bytes).
pub fn post_form(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &[u8])],
    timeout: Duration,
) -> Result<Answer> {
    let (content_type, body) = form(fields, files);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}",
        body.len()
    );
    raw(addr, &head, &body, timeout)
}

/// The content type and body of a multipart form.
pub fn form(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "vla-demo-form-7d1f4b2a9c";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// One whole answer, from its bytes.
pub fn parse(bytes: &[u8]) -> Result<Answer> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no header end")?;
    let head = std::str::from_utf8(&bytes[..split]).context("the answer's head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk has no size line")?;
        let size_text = std::str::from_utf8(&rest[..end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            bail!("a chunk is cut short");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_plain_answers_parse() {
        let a = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"abcde"[..]));
        let b = parse(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((b.status, b.header("content-length")), (404, Some("2")));
    }
}
