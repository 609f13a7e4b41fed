//! OCSP against the service's public listener (`POST /ocsp`): requests with a SHA-1
//! CertID of the real issuing CA, responses checked to be successful basic responses
//! for the asked serial, and the load itself — N keep-alive clients over random
//! serials of the fleet for a fixed time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use der::{Decode, Encode};
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request, TbsRequest};

use crate::http;

/// Longest one OCSP request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An OCSP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Good,
    Revoked,
    Unknown,
}

/// The CertID hashes of one CA (SHA-1, what most relying parties send).
#[derive(Clone, Debug)]
pub struct Issuer {
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
}

impl Issuer {
    /// Hashes computed here from the CA certificate (not by the service's code).
    pub fn from_ca_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).context("the CA certificate")?;
        let sha1 =
            |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, b).as_ref().to_vec();
        Ok(Self {
            name_hash: sha1(cert.subject().as_raw()),
            key_hash: sha1(&cert.public_key().subject_public_key.data),
        })
    }

    /// A nonce-less request for one serial (its DER INTEGER content octets).
    pub fn request(&self, serial: &[u8]) -> Result<Vec<u8>> {
        let id = revocation::ocsp::CertId::new(
            revocation::ocsp::HashAlgorithm::Sha1,
            &self.name_hash,
            &self.key_hash,
            serial,
        )?;
        let req = OcspRequest {
            tbs_request: TbsRequest {
                version: x509_ocsp::Version::V1,
                requestor_name: None,
                request_list: vec![Request { req_cert: id.as_x509().clone(), single_request_extensions: None }],
                request_extensions: None,
            },
            optional_signature: None,
        };
        Ok(req.to_der()?)
    }
}

/// The status and serial of a successful single response.
pub fn parse_response(der: &[u8]) -> Result<(Status, Vec<u8>)> {
    let resp = OcspResponse::from_der(der).context("not an OCSPResponse")?;
    if resp.response_status != OcspResponseStatus::Successful {
        bail!("responseStatus {:?}", resp.response_status);
    }
    let bytes = resp.response_bytes.context("no responseBytes")?;
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).context("not a BasicOCSPResponse")?;
    let single = basic.tbs_response_data.responses.first().context("no SingleResponse")?;
    let status = match single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(_) => Status::Revoked,
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok((status, single.cert_id.serial_number.as_bytes().to_vec()))
}

/// Asks once on `conn`; the status if the answer is a good one for `serial`.
pub async fn ask<S>(conn: &mut http::Conn<S>, issuer: &Issuer, serial: &[u8]) -> Result<Status>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = issuer.request(serial)?;
    let headers = [("Content-Type", "application/ocsp-request")];
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, conn.request("POST", "/ocsp", &headers, &body))
        .await
        .context("OCSP request timed out")??;
    if resp.status != 200 {
        bail!("OCSP answered HTTP {}", resp.status);
    }
    let (status, got) = parse_response(&resp.body)?;
    if got != serial {
        bail!("OCSP answered for serial {} instead of {}", hex::encode(got), hex::encode(serial));
    }
    Ok(status)
}

/// A serial to ask about and the status its stored record implies.
#[derive(Clone, Debug)]
pub struct Target {
    pub serial: Vec<u8>,
    pub stored: Status,
}

/// What a load run saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub requests: u64,
    /// Not HTTP 200, or not a successful response for the serial, or timed out.
    pub errors: u64,
    /// Answers fully checked (every 16th), and those whose status was not the stored one.
    pub checked: u64,
    pub mismatched: u64,
    /// Serials asked (distinct unless the run wrapped around the targets).
    pub distinct: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LoadReport {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `clients` keep-alive connections asking about `targets` in turn until `duration`
/// has passed — with `once`, or until each was asked once (a cold cache stays cold).
/// Each request is bounded by [`REQUEST_TIMEOUT`].
pub async fn load(
    addr: SocketAddr,
    issuer: Arc<Issuer>,
    targets: Arc<Vec<Target>>,
    clients: usize,
    duration: Duration,
    once: bool,
) -> Result<LoadReport> {
    if targets.is_empty() {
        bail!("no serials to ask about");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (issuer, targets, next) = (issuer.clone(), targets.clone(), next.clone());
        tasks.push(tokio::spawn(async move { client(addr, &issuer, &targets, &next, deadline, once).await }));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for t in tasks {
        let (r, mut l) = t.await??;
        report.requests += r.requests;
        report.errors += r.errors;
        report.checked += r.checked;
        report.mismatched += r.mismatched;
        latencies.append(&mut l);
    }
    report.elapsed = started.elapsed();
    report.distinct = (next.load(Ordering::Relaxed) as u64).min(targets.len() as u64);
    latencies.sort_unstable();
    let pick =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    report.p50_us = pick(0.5).unwrap_or(0).into();
    report.p99_us = pick(0.99).unwrap_or(0).into();
    report.max_us = latencies.last().copied().unwrap_or(0).into();
    Ok(report)
}

async fn client(
    addr: SocketAddr,
    issuer: &Issuer,
    targets: &[Target],
    next: &AtomicUsize,
    deadline: Instant,
    once: bool,
) -> Result<(LoadReport, Vec<u32>)> {
    let mut r = LoadReport::default();
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut conn = None;
    while Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if once && i >= targets.len() {
            break;
        }
        let t = &targets[i % targets.len()];
        let body = issuer.request(&t.serial)?;
        if conn.is_none() {
            conn = http::connect_plain(addr).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            r.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let sent = Instant::now();
        let headers = [("Content-Type", "application/ocsp-request")];
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, c.request("POST", "/ocsp", &headers, &body)).await;
        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        r.requests += 1;
        match answer {
            Ok(Ok(resp)) if resp.status == 200 => {
                if i.is_multiple_of(16) {
                    r.checked += 1;
                    match parse_response(&resp.body) {
                        Ok((status, serial)) if serial == t.serial => r.mismatched += u64::from(status != t.stored),
                        _ => r.errors += 1,
                    }
                }
            }
            Ok(Ok(_)) => r.errors += 1,
            _ => {
                r.errors += 1;
                conn = None;
            }
        }
    }
    Ok((r, latencies))
}
