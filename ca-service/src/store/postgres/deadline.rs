//! The socket under every pooled PostgreSQL connection, with a read deadline: while a
//! request is unanswered the server must send something at least every silence
//! timeout, or reads fail with `TimedOut` and the connection closes (its callers get
//! `Unavailable`, deadpool replaces it). A frozen server (SIGSTOP, a hung host)
//! enforces no `statement_timeout` and its kernel keeps the TCP connection alive, so
//! without this a caller waits for as long as the freeze lasts.
//!
//! "Unanswered" is counted on the wire: every startup message, simple `Query` and
//! `Sync` the client writes is answered by exactly one `ReadyForQuery` (RFC: the
//! PostgreSQL protocol, "Message Flow"). An idle connection has nothing unanswered and
//! is never timed out, however long it stays idle.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

enum Inner {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    /// A connection that could not be opened: every I/O reports why (so that
    /// tokio-postgres turns it into its own error type).
    Failed(Option<io::Error>),
}

/// What a store's connections share.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Raised when a silence timeout struck (the store then drops its idle
    /// connections: they are most likely stuck on the same server).
    pub(super) struck: AtomicBool,
    /// Bulk operations in progress (a whole import, a whole model revoked): while there
    /// are any, silence is no error (their statements may run long; see `Bulk`).
    pub(super) bulk: AtomicUsize,
}

/// Marks a bulk operation for as long as it lives.
pub(super) struct Bulk(Arc<Watch>);

impl Bulk {
    pub(super) fn new(watch: &Arc<Watch>) -> Self {
        watch.bulk.fetch_add(1, Ordering::AcqRel);
        Self(watch.clone())
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        self.0.bulk.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Splits a PostgreSQL message stream into messages (type byte + length; the first
/// frontend message, the startup message, has no type byte) and reports each type.
#[derive(Debug)]
struct Framer {
    header: [u8; 5],
    have: usize,
    skip: usize,
    typed: bool,
}

impl Framer {
    fn frontend() -> Self {
        Self { header: [0; 5], have: 0, skip: 0, typed: false }
    }

    fn backend() -> Self {
        Self { header: [0; 5], have: 0, skip: 0, typed: true }
    }

    /// Feeds bytes; `seen` gets each message's type as its header completes (0 for
    /// the untyped startup message).
    fn feed(&mut self, mut data: &[u8], mut seen: impl FnMut(u8)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            let header_len = if self.typed { 5 } else { 4 };
            let k = (header_len - self.have).min(data.len());
            self.header[self.have..self.have + k].copy_from_slice(&data[..k]);
            self.have += k;
            data = &data[k..];
            if self.have == header_len {
                let (kind, len) = if self.typed {
                    (self.header[0], [self.header[1], self.header[2], self.header[3], self.header[4]])
                } else {
                    (0, [self.header[0], self.header[1], self.header[2], self.header[3]])
                };
                // The length counts itself.
                self.skip = (u32::from_be_bytes(len) as usize).saturating_sub(4);
                self.have = 0;
                self.typed = true;
                seen(kind);
            }
        }
    }
}

pub(super) struct Socket {
    inner: Inner,
    silence: Duration,
    sent: Framer,
    received: Framer,
    /// Startup messages, `Query`s and `Sync`s not yet answered by `ReadyForQuery`.
    unanswered: usize,
    /// Armed while something is unanswered; pushed back by every byte received.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    watch: Arc<Watch>,
}

impl Socket {
    pub(super) fn tcp(stream: tokio::net::TcpStream, silence: Duration, watch: Arc<Watch>) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self::new(Inner::Tcp(stream), silence, watch))
    }

    #[cfg(unix)]
    pub(super) fn unix(stream: tokio::net::UnixStream, silence: Duration, watch: Arc<Watch>) -> Self {
        Self::new(Inner::Unix(stream), silence, watch)
    }

    pub(super) fn failed(error: io::Error) -> Self {
        Self::new(Inner::Failed(Some(error)), Duration::ZERO, Arc::default())
    }

    fn new(inner: Inner, silence: Duration, watch: Arc<Watch>) -> Self {
        Self {
            inner,
            silence,
            sent: Framer::frontend(),
            received: Framer::backend(),
            unanswered: 0,
            deadline: None,
            watch,
        }
    }

    /// Arms the deadline (or pushes it back) while something is unanswered.
    fn rearm(&mut self) {
        if self.unanswered == 0 {
            self.deadline = None;
            return;
        }
        let at = tokio::time::Instant::now() + self.silence;
        match self.deadline.as_mut() {
            Some(d) => d.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }
}

fn failure(error: &mut Option<io::Error>) -> io::Error {
    error.take().unwrap_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "PostgreSQL connection failed"))
}

impl AsyncRead for Socket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = match &mut this.inner {
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Inner::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Failed(e) => return Poll::Ready(Err(failure(e))),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let unanswered = &mut this.unanswered;
                    this.received.feed(&buf.filled()[before..], |kind| {
                        if kind == b'Z' {
                            *unanswered = unanswered.saturating_sub(1);
                        }
                    });
                    this.rearm();
                    if let Some(d) = this.deadline.as_mut() {
                        let _ = d.as_mut().poll(cx);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(deadline) = this.deadline.as_mut() else { return Poll::Pending };
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.watch.bulk.load(Ordering::Acquire) > 0 {
                    // A bulk operation may keep the server busy: wait on.
                    deadline.as_mut().reset(tokio::time::Instant::now() + this.silence);
                    let _ = deadline.as_mut().poll(cx);
                    return Poll::Pending;
                }
                this.watch.struck.store(true, Ordering::Release);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("PostgreSQL sent nothing for {} s", this.silence.as_secs()),
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, data),
            #[cfg(unix)]
            Inner::Unix(s) => Pin::new(s).poll_write(cx, data),
            Inner::Failed(e) => return Poll::Ready(Err(failure(e))),
        };
        if let Poll::Ready(Ok(n)) = polled {
            let before = this.unanswered;
            let unanswered = &mut this.unanswered;
            this.sent.feed(&data[..n], |kind| {
                if matches!(kind, 0 | b'Q' | b'S') {
                    *unanswered += 1;
                }
            });
            // Pushed back by answers only: a stream of writes does not keep it open.
            if before == 0 || this.deadline.is_none() {
                this.rearm();
                // Register the timer with this task now: the connection may next wait on
                // the socket alone, which a frozen server never wakes.
                if let Some(d) = this.deadline.as_mut() {
                    let _ = d.as_mut().poll(cx);
                }
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Inner::Unix(s) => Pin::new(s).poll_flush(cx),
            Inner::Failed(e) => Poll::Ready(Err(failure(e))),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Inner::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Failed(_) => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(socket: &mut Socket) -> io::Result<usize> {
        let mut buf = [0u8; 8];
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf);
            Pin::new(&mut *socket).poll_read(cx, &mut rb).map_ok(|()| rb.filled().len())
        })
        .await
    }

    async fn write(socket: &mut Socket, data: &[u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| Pin::new(&mut *socket).poll_write(cx, data)).await
    }

    /// `Sync` (frontend) and `ReadyForQuery` (backend) messages.
    const SYNC: &[u8] = &[b'S', 0, 0, 0, 4];
    const READY: &[u8] = &[b'Z', 0, 0, 0, 5, b'I'];

    #[test]
    fn framing_counts_messages_split_anywhere() {
        let mut f = Framer::frontend();
        let mut kinds = Vec::new();
        let mut stream = vec![0, 0, 0, 8, 0, 3, 0, 0];
        stream.extend_from_slice(&[b'Q', 0, 0, 0, 6, b'x', 0]);
        stream.extend_from_slice(SYNC);
        for chunk in stream.chunks(3) {
            f.feed(chunk, |k| kinds.push(k));
        }
        assert_eq!(kinds, vec![0, b'Q', b'S']);
    }

    /// A peer that accepts and then says nothing: a read with nothing unanswered waits;
    /// after a `Sync` it times out; an answer disarms it.
    #[tokio::test]
    async fn silence_while_unanswered_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            s.writable().await.unwrap();
            s
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let watch = Arc::new(Watch::default());
        let mut socket = Socket::tcp(stream, Duration::from_millis(200), watch.clone()).unwrap();
        // The startup message is unanswered until a ReadyForQuery.
        let peer_socket = peer.await.unwrap();
        assert_eq!(write(&mut socket, &[0, 0, 0, 8, 0, 3, 0, 0]).await.unwrap(), 8);
        peer_socket.try_write(READY).unwrap();
        assert_eq!(read(&mut socket).await.unwrap(), READY.len());
        let idle = tokio::time::timeout(Duration::from_millis(400), read(&mut socket)).await;
        assert!(idle.is_err(), "an idle connection must not time out");
        assert_eq!(write(&mut socket, SYNC).await.unwrap(), SYNC.len());
        let started = std::time::Instant::now();
        let err = read(&mut socket).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(watch.struck.load(Ordering::Acquire));
        // During a bulk operation silence is no error.
        let bulk = Bulk::new(&watch);
        let waited = tokio::time::timeout(Duration::from_millis(600), read(&mut socket)).await;
        assert!(waited.is_err(), "a bulk operation's connection timed out");
        drop(bulk);
        drop(peer_socket);
    }

    #[tokio::test]
    async fn a_failed_socket_reports_its_error() {
        let mut socket = Socket::failed(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        let err = write(&mut socket, b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
