//! A small HTTP/1.1 client over any byte stream (plain TCP or TLS): one request at a
//! time per connection, `Content-Length` or chunked response bodies, keep-alive unless
//! the server says `Connection: close` (or answers HTTP/1.0 without keep-alive).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// One HTTP/1.1 connection with its read buffer.
#[derive(Debug)]
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
}

/// A request: method, path, host, optional content type and body, and whether to ask
/// the server to close the connection after answering.
pub fn request(method: &str, path: &str, host: &str, content_type: Option<&str>, body: &[u8], close: bool) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self { stream, buf: Vec::with_capacity(8192) }
    }

    /// Reads more bytes into the buffer; the peer closing is an error here.
    async fn fill(&mut self) -> Result<()> {
        self.buf.reserve(8192);
        let n = self.stream.read_buf(&mut self.buf).await.context("reading the response")?;
        if n == 0 {
            bail!("the server closed the connection before the response was complete");
        }
        Ok(())
    }

    /// The first `n` buffered bytes (reading more as needed), removed from the buffer.
    async fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// One CRLF-terminated line (without the CRLF), removed from the buffer.
    async fn line(&mut self) -> Result<String> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                let line = self.take(p + 2).await?;
                return Ok(String::from_utf8_lossy(&line[..p]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response line too long");
            }
            self.fill().await?;
        }
    }

    /// Sends a complete request and reads the complete response.
    pub async fn send(&mut self, request: &[u8]) -> Result<Response> {
        self.stream.write_all(request).await.context("sending the request")?;
        self.stream.flush().await.context("sending the request")?;
        loop {
            let head_end = loop {
                if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                    break p + 4;
                }
                if self.buf.len() > MAX_HEAD {
                    bail!("response head larger than {MAX_HEAD} bytes");
                }
                self.fill().await?;
            };
            let head_bytes = self.take(head_end).await?;
            let head = std::str::from_utf8(&head_bytes).context("response head is not UTF-8")?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let mut parts = status_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            let status: u16 =
                parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line '{status_line}'"))?;
            if !version.starts_with("HTTP/1.") {
                bail!("not an HTTP/1.x response: '{status_line}'");
            }
            let mut keep_alive = version != "HTTP/1.0";
            let (mut length, mut chunked) = (None, false);
            for line in lines.filter(|l| !l.is_empty()) {
                let Some((name, value)) = line.split_once(':') else { bail!("bad header line '{line}'") };
                let (name, value) = (name.trim(), value.trim());
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().with_context(|| format!("bad Content-Length '{value}'"))?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    let v = value.to_ascii_lowercase();
                    if v.contains("close") {
                        keep_alive = false;
                    } else if v.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            // Interim responses (100 Continue …) precede the real one.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let body = if status == 204 || status == 304 {
                Vec::new()
            } else if chunked {
                self.chunked_body().await?
            } else if let Some(n) = length {
                if n > MAX_BODY {
                    bail!("response body of {n} bytes is too large");
                }
                self.take(n).await?
            } else {
                // Delimited by the end of the connection.
                keep_alive = false;
                loop {
                    self.buf.reserve(8192);
                    if self.stream.read_buf(&mut self.buf).await.context("reading the response")? == 0 {
                        break;
                    }
                    if self.buf.len() > MAX_BODY {
                        bail!("response body too large");
                    }
                }
                std::mem::take(&mut self.buf)
            };
            return Ok(Response { status, body, keep_alive });
        }
    }

    async fn chunked_body(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).with_context(|| format!("bad chunk size '{line}'"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                bail!("response body too large");
            }
            body.extend_from_slice(&self.take(size).await?);
            if !self.line().await?.is_empty() {
                bail!("chunk not followed by CRLF");
            }
        }
    }
}

/// A plain TCP connection to `addr` with Nagle off.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A one-off plain-HTTP GET (readiness, CA certificates).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    tokio::time::timeout(timeout, async {
        let mut conn = Conn::new(connect(addr).await?);
        conn.send(&request("GET", path, &addr.to_string(), None, &[], true)).await
    })
    .await
    .map_err(|_| anyhow!("GET http://{addr}{path} timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &'static [u8]) -> Result<Response> {
        let (mut server, client) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut req = [0u8; 256];
            let _ = server.read(&mut req).await;
            let _ = server.write_all(raw).await;
        });
        Conn::new(client).send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await
    }

    #[tokio::test]
    async fn content_length_and_keep_alive() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.keep_alive), (200, &b"hello"[..], true));
        let r = parse(b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno").await.unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.keep_alive), (403, &b"no"[..], false));
    }

    #[tokio::test]
    async fn chunked_and_interim() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }

    #[tokio::test]
    async fn truncated_is_an_error() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await.is_err());
    }

    #[test]
    fn request_head() {
        let r = request("POST", "/p", "127.0.0.1:1", Some("application/pkcs10"), b"xyz", true);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /p HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Type: application/pkcs10\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nxyz"
        );
    }
}
