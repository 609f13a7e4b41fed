//! `/log/…` (C2SP tlog-tiles): the checkpoint, hash tiles and entry bundles, on the
//! public listener and the HTTPS listener.
//!
//! Everything is served relative to the newest signed checkpoint: a tile that reaches
//! past it is 404, so what a client fetches always belongs to a tree some checkpoint
//! commits to. Tiles never change once they exist (a partial tile of width W is the
//! same bytes forever), so they are cached for a year; the checkpoint for a second.
//! Entry bundles name devices: unless `log.public_entries`, they are for the
//! `auditor` role and above, on the HTTPS listener.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{tree, TransparencyLog};
use crate::admin::Operation;
use crate::est::Refusal;
use crate::issuance::Pki;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CHECKPOINT_CACHE: &str = "public, max-age=1, must-revalidate";

/// Which listener the routes are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Public,
    Https,
}

/// The `/log` routes.
pub fn routes(cfg: &mut web::ServiceConfig, listener: Listener) {
    cfg.service(
        web::scope("/log")
            .app_data(web::Data::new(listener))
            .route("/checkpoint", web::get().to(checkpoint))
            .default_service(web::get().to(tile)),
    );
}

fn text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(body)
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> HttpResponse {
    text(status, format!("{}\n", reason.into()))
}

fn log_of(req: &HttpRequest) -> Option<Arc<TransparencyLog>> {
    req.app_data::<web::Data<Arc<TransparencyLog>>>().map(|d| d.get_ref().clone())
}

async fn checkpoint(req: HttpRequest) -> HttpResponse {
    let Some(log) = log_of(&req) else {
        return refuse(StatusCode::NOT_FOUND, "no transparency log is served here");
    };
    match log.refresh().await {
        Ok(Some(cp)) => {
            let mut res = text(StatusCode::OK, cp.note.clone());
            res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static(CHECKPOINT_CACHE));
            res
        }
        Ok(None) => refuse(StatusCode::SERVICE_UNAVAILABLE, "no checkpoint has been signed yet"),
        Err(e) => {
            tracing::warn!(error = %e, "reading the newest checkpoint failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "the checkpoint is not available")
        }
    }
}

/// `/log/tile/<L>/<N>[.p/<W>]` and `/log/tile/entries/<N>[.p/<W>]`.
async fn tile(req: HttpRequest, pki: web::Data<Pki>, listener: web::Data<Listener>) -> HttpResponse {
    let Some(log) = log_of(&req) else {
        return refuse(StatusCode::NOT_FOUND, "no transparency log is served here");
    };
    let Some(path) = req.path().strip_prefix("/log/") else {
        return refuse(StatusCode::NOT_FOUND, "not found");
    };
    let size = match log.refresh().await {
        Ok(Some(cp)) => cp.size,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no checkpoint has been signed yet"),
        Err(e) => {
            tracing::warn!(error = %e, "reading the newest checkpoint failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the log is not available");
        }
    };
    if path.starts_with("tile/entries/") {
        let entries = match tlog::parse_entries_path(path) {
            Ok(t) => t,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad entry bundle path: {e}")),
        };
        if pki.config.log.public_entries {
            return entry_bundle(&log, entries, size).await.unwrap_or_else(|r| refuse(r.status, r.reason));
        }
        if *listener.get_ref() == Listener::Public {
            return refuse(
                StatusCode::FORBIDDEN,
                "entry bundles are for the auditor role: fetch them from the HTTPS listener with a token",
            );
        }
        return crate::admin::handle(&pki, &req, Operation::ReadLogEntries, "log", async |_| {
            entry_bundle(&log, entries, size).await
        })
        .await;
    }
    let tile = match tlog::parse_tile_path(path) {
        Ok(t) => t,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad tile path: {e}")),
    };
    let available = size >> (8 * u32::from(tile.level));
    if tile.index * tlog::TILE_WIDTH + u64::from(tile.width) > available {
        return refuse(StatusCode::NOT_FOUND, format!("tile {} reaches past the newest checkpoint", tile.path()));
    }
    match tree::read_tile(log.store.as_ref(), tile).await {
        Ok(hashes) => binary(hashes.concat()),
        Err(e) => {
            tracing::error!(error = %e, tile = %tile.path(), "reading a tile the checkpoint covers failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "the tile is not available")
        }
    }
}

fn binary(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .body(body)
}

async fn entry_bundle(log: &TransparencyLog, tile: tlog::TileId, size: u64) -> Result<HttpResponse, Refusal> {
    let start = tile.index * tlog::TILE_WIDTH;
    if start + u64::from(tile.width) > size {
        return Err(Refusal::new(StatusCode::NOT_FOUND, "the entry bundle reaches past the newest checkpoint"));
    }
    let after = i64::try_from(start).map_err(|_| Refusal::bad_request("index out of range"))?;
    let entries = log.store.audit_entries(after, i64::from(tile.width)).await.map_err(Refusal::from)?;
    if entries.len() != usize::from(tile.width) || entries.iter().zip(after + 1..).any(|(e, seq)| e.seq != seq) {
        tracing::error!(bundle = %tile.entries_path(), "entries the checkpoint covers are missing");
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "entries the checkpoint covers are missing"));
    }
    let leaves: Vec<Vec<u8>> = entries.iter().map(|e| e.leaf_bytes()).collect();
    let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    let bundle = tlog::encode_entry_bundle(&refs).map_err(|e| {
        tracing::error!(error = %e, "an entry does not fit a bundle");
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    Ok(binary(bundle))
}
