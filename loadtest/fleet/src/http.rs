//! A small HTTP/1.1 keep-alive client (plain TCP or TLS) — enough for the service's
//! OCSP, CRL and admin endpoints, with nothing between the clock and the socket.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest body read (a 100k-device revocation answers with every certificate).
const MAX_BODY: usize = 512 << 20;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One connection, reused for every request.
pub struct Conn<S> {
    io: BufReader<S>,
    host: String,
}

pub async fn connect_plain(addr: std::net::SocketAddr) -> Result<Conn<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(Conn { io: BufReader::new(tcp), host: addr.to_string() })
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS to the service's HTTPS listener, trusting `anchors` (the CA certificates in
/// table `cas`: the server certificate is issued by one of them).
pub async fn connect_tls(addr: std::net::SocketAddr, anchors: &[Vec<u8>]) -> Result<Conn<TlsStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for der in anchors {
        roots.add(rustls_pki_types::CertificateDer::from(der.clone())).context("a CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.context("TLS handshake")?;
    Ok(Conn { io: BufReader::new(tls), host: addr.to_string() })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Sends one request and reads its whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.host, body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.io.get_mut().write_all(&out).await?;
        self.io.get_mut().flush().await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> Result<Response> {
        let mut line = String::new();
        self.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
        let (mut length, mut chunked, mut content_type) = (None, false, String::new());
        loop {
            self.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else { bail!("bad header line {l:?}") };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = Some(v.parse::<usize>()?),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "content-type" => content_type = v.to_string(),
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked().await?
        } else {
            let n = length.context("neither Content-Length nor chunked")?;
            if n > MAX_BODY {
                bail!("body of {n} bytes");
            }
            let mut body = vec![0; n];
            self.io.read_exact(&mut body).await?;
            body
        };
        Ok(Response { status, content_type, body })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let (mut body, mut line) = (Vec::new(), String::new());
        loop {
            self.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
            if body.len() + size > MAX_BODY {
                bail!("chunked body over {MAX_BODY} bytes");
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.io.read_exact(&mut body[start..]).await?;
            self.read_line(&mut line).await?;
            if size == 0 {
                return Ok(body);
            }
        }
    }

    async fn read_line(&mut self, line: &mut String) -> Result<()> {
        line.clear();
        if self.io.read_line(line).await? == 0 {
            bail!("connection closed");
        }
        Ok(())
    }
}
