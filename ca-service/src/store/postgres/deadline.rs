//! The socket under every pooled PostgreSQL connection, with a read deadline: once the
//! client has written, the server must send something back within the silence
//! timeout, or reads fail with `TimedOut` and the connection closes (its callers get
//! `Unavailable`, deadpool replaces it). A frozen server (SIGSTOP, a hung host)
//! enforces no `statement_timeout` and its kernel keeps the TCP connection alive, so
//! without this a caller waits for as long as the freeze lasts. An idle connection has
//! written nothing unanswered and is never timed out.

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

pub(super) struct Socket {
    inner: Inner,
    silence: Duration,
    /// Armed by a write that nothing has been read since.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    watch: Arc<Watch>,
}

impl Socket {
    pub(super) fn tcp(stream: tokio::net::TcpStream, silence: Duration, watch: Arc<Watch>) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(Self { inner: Inner::Tcp(stream), silence, deadline: None, watch })
    }

    #[cfg(unix)]
    pub(super) fn unix(stream: tokio::net::UnixStream, silence: Duration, watch: Arc<Watch>) -> Self {
        Self { inner: Inner::Unix(stream), silence, deadline: None, watch }
    }

    pub(super) fn failed(error: io::Error) -> Self {
        Self { inner: Inner::Failed(Some(error)), silence: Duration::ZERO, deadline: None, watch: Arc::default() }
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
                    this.deadline = None;
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
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) && this.deadline.is_none() {
            this.deadline = Some(Box::pin(tokio::time::sleep(this.silence)));
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

    /// A peer that accepts and then says nothing: the read after a write times out; a
    /// read with nothing written waits.
    #[tokio::test]
    async fn silence_after_a_write_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let watch = Arc::new(Watch::default());
        let mut socket = Socket::tcp(stream, Duration::from_millis(200), watch.clone()).unwrap();
        let idle = tokio::time::timeout(Duration::from_millis(400), read(&mut socket)).await;
        assert!(idle.is_err(), "an idle connection must not time out");
        assert_eq!(write(&mut socket, b"ping").await.unwrap(), 4);
        let started = std::time::Instant::now();
        let err = read(&mut socket).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(watch.struck.load(Ordering::Acquire));
        // During a bulk operation silence is no error.
        let bulk = Bulk::new(&watch);
        assert_eq!(write(&mut socket, b"ping").await.unwrap(), 4);
        let waited = tokio::time::timeout(Duration::from_millis(600), read(&mut socket)).await;
        assert!(waited.is_err(), "a bulk operation's connection timed out");
        drop(bulk);
        peer.abort();
    }

    #[tokio::test]
    async fn a_failed_socket_reports_its_error() {
        let mut socket = Socket::failed(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        let err = write(&mut socket, b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
