//! Limits and deadlines of both HTTP listeners (DESIGN invariant 8): what a caller
//! who never authenticates can hold — a connection, a half-sent request, a body that
//! never ends — is bounded in time and size.
//!
//! - The request head: [`REQUEST_HEAD_TIMEOUT`] (actix `client_request_timeout`, 408).
//! - The body: a declared `Content-Length` over the endpoint's limit ([`body_limit`]) is
//!   refused before a byte of it is read; the whole body must arrive within
//!   [`REQUEST_BODY_TIMEOUT`] of the request head, or the request is answered 408 and
//!   the connection closed.
//! - Idle keep-alive [`KEEP_ALIVE`], closing [`CLIENT_DISCONNECT_TIMEOUT`], the TLS
//!   handshake [`TLS_HANDSHAKE_TIMEOUT`], connections per worker
//!   [`MAX_CONNECTIONS_PER_WORKER`] and concurrent TLS handshakes per worker
//!   [`MAX_TLS_HANDSHAKES_PER_WORKER`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse};
use futures_core::Stream;

/// The whole request head (request line and headers) must arrive within this long of
/// the connection being accepted (actix `client_request_timeout`); else 408.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole request body must arrive within this long of its head; else 408 and the
/// connection is closed. A body of 64 KiB needs 6.6 KiB/s; 1 byte every 0.5 s is cut.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle kept-alive connection is closed after this long.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long closing a connection may take (the client reading the last answer, the
/// rest of a refused body being discarded) before it is dropped.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The TLS handshake of the HTTPS listener must finish within this long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Open connections per worker (one worker per core) before accepting pauses.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 25_000;
/// TLS handshakes in progress per worker before accepting pauses.
pub const MAX_TLS_HANDSHAKES_PER_WORKER: usize = 256;

/// The largest body an endpoint accepts: what its handler reads at most.
pub fn body_limit(path: &str) -> usize {
    if path == "/ocsp" || path.starts_with("/ocsp/") {
        revocation::ocsp::MAX_REQUEST_LEN
    } else if path.starts_with("/.well-known/est/") {
        enrollment::MAX_BODY_BYTES
    } else if path.starts_with("/api/v1/") {
        crate::admin::MAX_JSON_BYTES
    } else {
        super::MAX_BODY_BYTES
    }
}

/// EST and the admin API refuse an oversized body themselves, typed and audited; the
/// other endpoints are refused here.
fn handler_refuses_oversize(path: &str) -> bool {
    path.starts_with("/.well-known/est/") || path.starts_with("/api/v1/")
}

/// What a handler of [`handler_refuses_oversize`] reads instead of a body declared
/// larger than its limit: more than any limit, so it refuses at once (413, with its
/// reason and audit entry) without a byte of the real body being read.
static OVER_ANY_LIMIT: [u8; MAX_LIMIT + 1] = [0; MAX_LIMIT + 1];
const MAX_LIMIT: usize = 64 * 1024;
const _: () = assert!(
    MAX_LIMIT >= super::MAX_BODY_BYTES
        && MAX_LIMIT >= enrollment::MAX_BODY_BYTES
        && MAX_LIMIT >= crate::admin::MAX_JSON_BYTES
        && MAX_LIMIT >= revocation::ocsp::MAX_REQUEST_LEN
);

type Answer<B> = Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>>;

/// The middleware (`App::wrap_fn`): the declared-length check and the body deadline.
pub fn enforce<S, B>(mut req: ServiceRequest, srv: &S) -> Answer<B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: 'static,
{
    let limit = body_limit(req.path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.is_some_and(|n| n > limit as u64) {
        if handler_refuses_oversize(req.path()) {
            req.set_payload(Payload::from(Bytes::from_static(&OVER_ANY_LIMIT)));
            let fut = srv.call(req);
            return Box::pin(async move { fut.await.map(ServiceResponse::map_into_left_body) });
        }
        let res = HttpResponse::PayloadTooLarge()
            .content_type("text/plain; charset=utf-8")
            .force_close()
            .body(format!("request body larger than {limit} bytes\n"));
        return Box::pin(async move { Ok(req.into_response(res).map_into_right_body()) });
    }
    if declared.unwrap_or(0) == 0 && !chunked {
        let fut = srv.call(req);
        return Box::pin(async move { fut.await.map(ServiceResponse::map_into_left_body) });
    }

    let body = Rc::new(RefCell::new(Body {
        payload: Some(req.take_payload()),
        deadline: Box::pin(tokio::time::sleep(REQUEST_BODY_TIMEOUT)),
        complete: false,
        timed_out: false,
    }));
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(DeadlineBody(body.clone()));
    req.set_payload(Payload::Stream { payload: stream });
    let fut = srv.call(req);
    Box::pin(async move {
        let res = fut.await?;
        let mut body = body.borrow_mut();
        if body.complete {
            return Ok(res.map_into_left_body());
        }
        // Not all of the body arrived (not needed, refused or too slow). Keeping its
        // receiver alive until the answer is written makes actix close the connection
        // after the answer instead of reading on (a chunked body is otherwise drained,
        // however slowly it comes).
        let receiver = body.payload.take();
        let mut res = if body.timed_out {
            let timeout = HttpResponse::RequestTimeout()
                .content_type("text/plain; charset=utf-8")
                .force_close()
                .body(format!("request body not received within {} s\n", REQUEST_BODY_TIMEOUT.as_secs()));
            res.into_response(timeout).map_into_right_body()
        } else {
            res.map_into_left_body()
        };
        if let Some(receiver) = receiver {
            res.response_mut().extensions_mut().insert(UnreadBody(receiver));
        }
        Ok(res)
    })
}

/// The receiving end of a body not read to its end, kept with the answer.
struct UnreadBody(#[allow(dead_code)] Payload);

/// A request body, shared between the middleware and the stream the handler reads.
struct Body {
    payload: Option<Payload>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    complete: bool,
    timed_out: bool,
}

/// The body as the handler reads it: the request's body until [`REQUEST_BODY_TIMEOUT`],
/// then an error (and the middleware answers 408).
struct DeadlineBody(Rc<RefCell<Body>>);

impl Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.0.borrow_mut();
        let body = &mut *body;
        if body.complete || body.timed_out {
            return Poll::Ready(None);
        }
        let Some(payload) = body.payload.as_mut() else { return Poll::Ready(None) };
        match Pin::new(payload).poll_next(cx) {
            Poll::Ready(None) => {
                body.complete = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending => match body.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    body.timed_out = true;
                    let why = format!("request body not received within {} s", REQUEST_BODY_TIMEOUT.as_secs());
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_endpoint() {
        assert_eq!(body_limit("/ocsp"), 16 * 1024);
        assert_eq!(body_limit("/ocsp/MEow"), 16 * 1024);
        assert_eq!(body_limit("/.well-known/est/simpleenroll"), 64 * 1024);
        assert_eq!(body_limit("/api/v1/devices/x/revoke"), 16 * 1024);
        assert_eq!(body_limit("/healthz"), 64 * 1024);
        assert!(handler_refuses_oversize("/.well-known/est/x/simpleenroll"));
        assert!(!handler_refuses_oversize("/ocsp"));
    }
}
