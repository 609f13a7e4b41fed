//! `ca-service serve`: the public plain-HTTP listener (`/healthz`, `/readyz`, CA
//! certificates, CRLs, OCSP, the update trust bundle) and the HTTPS listener (EST under
//! `/.well-known/est/`, the admin API under `/api/v1`), both actix-web; HTTPS over
//! rustls with the server key in the key store. Before listening it loads the OCSP
//! responders and starts their revocation watch, and publishes due CRLs and starts the
//! CRL publisher (see `docs/0003`, `docs/0004`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Service;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use tracing::Instrument;

use crate::config::{MetricsListen, ProfileKind};
use crate::issuance::Pki;
use crate::profile::Subject;

pub mod limits;

/// Largest request body any endpoint accepts unless it sets its own lower limit.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `/readyz` answers within this long: a storage or key store that does not answer in
/// time is a reason not to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Label of the HTTPS server key, kept in the TLS issuer CA's key store.
pub const TLS_KEY_LABEL: &str = "tls-server";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("HTTPS server certificate: {0}")]
    ServerCert(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("OCSP responder: {0}")]
    Ocsp(String),
    #[error("transparency log: {0}")]
    Log(String),
    #[error(transparent)]
    CredentialKey(#[from] crate::credentials::KeyError),
}

/// Issues the HTTPS server certificate afresh at each start (a process that runs
/// longer than the `tls-server` profile's validity serves an expired one) and
/// returns the rustls configuration; with `server.tls_cert_file`/`tls_key_file` it
/// uses those instead.
async fn https_config(pki: &Pki) -> Result<rustls::ServerConfig, ServeError> {
    let err = |e: String| ServeError::ServerCert(e);
    let cfg = &pki.config;
    let roots = client_anchors(pki);
    if let (Some(cert), Some(key)) = (&cfg.server.tls_cert_file, &cfg.server.tls_key_file) {
        return crate::tls::server_config_from_files(cert, key, &roots).map_err(|e| err(e.to_string()));
    }
    let (profile_name, profile) = cfg
        .profiles
        .iter()
        .find(|(_, p)| p.kind == ProfileKind::TlsServer && p.issuer == cfg.server.tls_issuer)
        .ok_or_else(|| err(format!("no tls-server profile issued by CA '{}'", cfg.server.tls_issuer)))?;
    let ca = cfg.cas.get(&cfg.server.tls_issuer).ok_or_else(|| err("unknown TLS issuer".into()))?;
    let store = cfg.server.tls_key_store.clone().unwrap_or_else(|| ca.key_store.clone());
    let keys = pki.keys.clone();
    let key = tokio::task::spawn_blocking(move || match keys.find(&store, TLS_KEY_LABEL) {
        Ok(k) => Ok(k),
        Err(crate::keys::KeyStoreError::Hsm { cause: hsm::HsmError::KeyNotFound(_), .. }) => {
            keys.generate(&store, TLS_KEY_LABEL, hsm::KeyAlgorithm::EcdsaP256)
        }
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(|e| err(e.to_string()))?;
    let issued = pki
        .issue_checked(
            profile_name,
            profile,
            Subject::Server(cfg.server.tls_names.clone()),
            key.public_key_der(),
            "system:serve",
            None,
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    crate::telemetry::not_after(crate::telemetry::Expiry::TlsServer, issued.record.not_after);
    let mut chain = vec![issued.record.der];
    chain.extend(issued.chain);
    crate::tls::server_config(chain, key, &roots).map_err(|e| err(e.to_string()))
}

/// Client identities: the CAs that issue device and station certificates, and the
/// CAs above them, are trust anchors (so a device may present its bare leaf: EST
/// hands out the leaf only) and are named in the CertificateRequest. Which issuer an
/// endpoint accepts is the endpoint's rule.
fn client_anchors(pki: &Pki) -> Vec<Vec<u8>> {
    let client_kinds = |k: ProfileKind| matches!(k, ProfileKind::Device | ProfileKind::Station | ProfileKind::Operator);
    let mut anchors: Vec<Vec<u8>> = Vec::new();
    for p in pki.config.profiles.values().filter(|p| client_kinds(p.kind)) {
        // Every live key generation: a device keeps its old-key certificate until it renews.
        for der in pki.published_chain(&p.issuer) {
            if !anchors.contains(&der) {
                anchors.push(der);
            }
        }
    }
    anchors
}

/// Runs both listeners until a shutdown signal.
pub async fn serve(pki: Arc<Pki>) -> Result<(), ServeError> {
    let metrics_listen = pki.config.metrics.listen;
    if metrics_listen != MetricsListen::Off {
        // First: what loading records (the OCSP and TLS certificates' expiry, the first
        // CRLs' signatures) is counted.
        crate::telemetry::install();
    }
    let key = Arc::new(credential_key(&pki)?);
    let tls = https_config(&pki).await?;
    let ocsp = web::Data::new(crate::ocsp::OcspService::load(&pki).await.map_err(|e| ServeError::Ocsp(e.to_string()))?);
    ocsp.clone().into_inner().spawn_revocation_watch(pki.clone());
    // CRLs exist before the first request (unless another instance is publishing).
    if let Err(e) = crate::crl::publish_due(&pki).await {
        tracing::error!(error = %e, "publishing CRLs at start failed");
    }
    let crl_publisher = web::Data::new(crate::crl::CrlPublisher::default());
    crl_publisher.clone().into_inner().spawn(pki.clone());
    crate::rotation::spawn_deadlines(pki.clone(), ocsp.clone().into_inner(), crl_publisher.clone().into_inner());
    // A log from before the tree (or a new one) gets its key now; one that signed
    // checkpoints must still have it.
    crate::transparency::ensure_key(&pki.config, pki.store.as_ref(), &pki.keys, "system:serve")
        .await
        .map_err(|e| ServeError::Log(e.to_string()))?;
    let log = crate::transparency::TransparencyLog::open(&pki.config, pki.store.clone(), &pki.keys)
        .await
        .map_err(|e| ServeError::Log(e.to_string()))?;
    tracing::info!(origin = log.origin(), verifier_key = log.verifier_key(), "serving the transparency log");
    crate::transparency::job::spawn(log.clone());
    let log = web::Data::new(log);
    let (http_addr, https_addr) = (pki.config.server.http, pki.config.server.https);
    let gate = web::Data::new(crate::abuse::Gate::new(key, pki.store.clone()));
    gate.spawn_flush();
    let est = crate::est::state(pki.clone(), gate.key.clone());
    let console = pki.config.console.enabled.then(|| {
        let c = &pki.config.console;
        web::Data::new(crate::console::Sessions::new(
            Duration::from_secs(c.idle_timeout_secs),
            Duration::from_secs(c.max_session_secs),
        ))
    });
    let state = web::Data::from(pki);

    let metrics_public = metrics_listen == MetricsListen::Public;
    if metrics_listen != MetricsListen::Off {
        crate::telemetry::sampler::spawn(state.clone().into_inner());
    }
    // `metrics.listen = ADDRESS`: a listener of its own, with nothing but `/metrics`.
    let metrics_server = match metrics_listen {
        MetricsListen::Address(addr) => Some(
            HttpServer::new(|| App::new().route("/metrics", web::get().to(crate::telemetry::serve)))
                .workers(1)
                .keep_alive(limits::KEEP_ALIVE)
                .client_request_timeout(limits::REQUEST_HEAD_TIMEOUT)
                .max_connections(limits::MAX_CONNECTIONS_PER_WORKER)
                .bind(addr)
                .map_err(|source| ServeError::Bind { addr, source })?
                .run(),
        ),
        _ => None,
    };
    let public = {
        let (state, crls, ocsp) = (state.clone(), web::Data::new(crate::crl::CrlCache::default()), ocsp.clone());
        let log = log.clone();
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(crls.clone())
                .app_data(ocsp.clone())
                .app_data(log.clone())
                .wrap_fn(limits::enforce)
                .wrap_fn(|req, srv| request_span("public", req, srv))
                .configure(public_routes)
                .configure(|c| {
                    if metrics_public {
                        c.route("/metrics", web::get().to(crate::telemetry::serve));
                    }
                })
        })
        .keep_alive(limits::KEEP_ALIVE)
        .client_request_timeout(limits::REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(limits::CLIENT_DISCONNECT_TIMEOUT)
        .max_connections(limits::MAX_CONNECTIONS_PER_WORKER)
        .bind(http_addr)
        .map_err(|source| ServeError::Bind { addr: http_addr, source })?
        .run()
    };
    let private = {
        let (state, est, ocsp, gate) = (state.clone(), est.clone(), ocsp.clone(), gate.clone());
        let crl_publisher = crl_publisher.clone();
        let log = log.clone();
        HttpServer::new(move || {
            let mut app = App::new();
            if let Some(sessions) = &console {
                app = app.app_data(sessions.clone());
            }
            app.app_data(state.clone())
                .app_data(log.clone())
                .app_data(est.clone())
                .app_data(gate.clone())
                .app_data(ocsp.clone())
                .app_data(crl_publisher.clone())
                .wrap_fn(limits::enforce)
                .wrap_fn(|req, srv| request_span("https", req, srv))
                .configure(https_routes)
        })
        .keep_alive(limits::KEEP_ALIVE)
        .client_request_timeout(limits::REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(limits::CLIENT_DISCONNECT_TIMEOUT)
        .tls_handshake_timeout(limits::TLS_HANDSHAKE_TIMEOUT)
        .max_connections(limits::MAX_CONNECTIONS_PER_WORKER)
        .max_connection_rate(limits::MAX_TLS_HANDSHAKES_PER_WORKER)
        .on_connect(crate::est::capture_peer_certificate)
        .bind_rustls_0_23(https_addr, tls)
        .map_err(|source| ServeError::Bind { addr: https_addr, source })?
        .run()
    };
    tracing::info!(%http_addr, %https_addr, metrics = %String::from(metrics_listen), "serving");
    let metrics_served = async move {
        match metrics_server {
            Some(server) => server.await,
            None => Ok(()),
        }
    };
    let served = tokio::try_join!(public, private, metrics_served);
    // The refusals counted since the last window are audited before exit.
    gate.refusals.flush().await;
    served?;
    Ok(())
}

/// The credential key (`crate::credentials`), made on first start if there is none.
fn credential_key(pki: &Pki) -> Result<crate::credentials::CredentialKey, ServeError> {
    let (key, created) = crate::credentials::CredentialKey::load_or_create(&pki.config.data_dir)?;
    if created {
        tracing::warn!(
            path = %crate::credentials::CredentialKey::path(&pki.config.data_dir).display(),
            key = key.id(),
            "created the credential key for API tokens and station secrets; every instance sharing this \
             database needs the same file"
        );
    }
    Ok(key)
}

/// Routes of the public listener.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/ca/{file}", web::get().to(ca_certificate))
        .route("/update-trust/bundle.pem", web::get().to(update_trust_bundle))
        .route("/crl/{path:.*}", web::get().to(crate::crl::serve_crl))
        .configure(|c| crate::transparency::serve::routes(c, crate::transparency::serve::Listener::Public))
        // A scope, not a `{request:.*}` pattern: with actix-web's default features off the
        // router matches patterns with regex-lite, a quarter of the GET path's CPU.
        .service(
            web::scope("/ocsp")
                .route("", web::post().to(crate::ocsp::post))
                .default_service(web::get().to(crate::ocsp::get)),
        );
}

/// Routes of the HTTPS listener.
pub fn https_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .configure(crate::est::routes)
        .configure(crate::admin::routes)
        .configure(crate::console::routes)
        .configure(|c| crate::transparency::serve::routes(c, crate::transparency::serve::Listener::Https));
}

/// A span per request with a request id, echoed in `x-request-id`; the request's
/// latency in the metrics, by `listener` and route pattern.
fn request_span<S, B>(
    listener: &'static str,
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>>
where
    S: Service<actix_web::dev::ServiceRequest, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
{
    let id = hex::encode(rand::random::<[u8; 8]>());
    // The path with control characters escaped: it is the client's (DESIGN §7, logs).
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %crate::LogSafe(req.path()));
    let started = Instant::now();
    let bulk = req.path().starts_with("/ocsp") || req.path().starts_with("/crl/");
    let fut = srv.call(req);
    async move {
        let mut res = fut.await?;
        let elapsed = started.elapsed();
        let (status, elapsed_us) = (res.status().as_u16(), elapsed.as_micros() as u64);
        crate::telemetry::http_request(listener, res.request().match_pattern(), status, elapsed);
        // OCSP and CRL fetches are the bulk of the traffic: logged at debug unless they
        // fail, or the log costs more than the answer.
        if bulk && status < 400 {
            tracing::debug!(status, elapsed_us, "done");
        } else {
            tracing::info!(status, elapsed_us, "done");
        }
        if let Ok(v) = header::HeaderValue::from_str(&id) {
            res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
        }
        Ok(res)
    }
    .instrument(span)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready when the database answers and every loaded issuing key's store answers,
/// both within [`READY_TIMEOUT`]; else 503 with the reason.
async fn readyz(pki: web::Data<Pki>) -> HttpResponse {
    match readiness(&pki).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"ready": true})),
        Err(reason) => HttpResponse::ServiceUnavailable().json(serde_json::json!({"ready": false, "reason": reason})),
    }
}

async fn readiness(pki: &Pki) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let late = |what: &str| format!("{what}: no answer within {} s", READY_TIMEOUT.as_secs());
    let database: &dyn crate::store::Readiness = pki.store.as_ref();
    match tokio::time::timeout_at(deadline, database.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("storage: {e}")),
        Err(_) => return Err(late("storage")),
    }
    let stores: Vec<String> = pki
        .cas()
        .filter(|c| c.issuer().is_some())
        .map(|c| c.record.key_store.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let keys = pki.keys.clone();
    // A key store that hangs keeps its blocking thread; the answer does not wait for it.
    let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
        for s in stores {
            keys.get(&s)
                .and_then(|k| {
                    k.ping().map_err(|source| crate::keys::KeyStoreError::Hsm { store: s.clone(), cause: source })
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    match tokio::time::timeout_at(deadline, checked).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(late("key store")),
    }
}

/// `GET /ca/{name}.pem` (PEM) and `GET /ca/{name}.crt` (DER, the AIA caIssuers target).
async fn ca_certificate(pki: web::Data<Pki>, file: web::Path<String>) -> HttpResponse {
    let file = file.into_inner();
    let (name, pem) = match (file.strip_suffix(".pem"), file.strip_suffix(".crt")) {
        (Some(n), _) => (n, true),
        (_, Some(n)) => (n, false),
        _ => return not_found("use /ca/{name}.pem or /ca/{name}.crt"),
    };
    let Some(ca) = pki.ca(name) else {
        return not_found("no such CA");
    };
    let der = ca.record.cert_der.clone();
    let cache = (header::CACHE_CONTROL, "public, max-age=3600");
    if pem {
        HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .insert_header(cache)
            .body(pem::encode(&pem::Pem::new("CERTIFICATE", der)))
    } else {
        HttpResponse::Ok().content_type("application/pkix-cert").insert_header(cache).body(der)
    }
}

/// `GET /update-trust/bundle.pem`: the update root and the Update Authority CA, what
/// devices and the OTA pipeline pin for firmware (and nothing of the identity trust).
async fn update_trust_bundle(pki: web::Data<Pki>) -> HttpResponse {
    match crate::updates::trust_bundle_pem(&pki) {
        Some(pem) => HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
            .body(pem),
        None => not_found("no update authority is configured"),
    }
}

fn not_found(reason: &str) -> HttpResponse {
    HttpResponse::NotFound().content_type("text/plain").body(format!("{reason}\n"))
}
