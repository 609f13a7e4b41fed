//! Rotations: `POST /api/v1/rotations` (admin, operator) starts one; `GET` lists them
//! and `GET /rotations/{id}?after=&limit=` shows one's progress and the devices that
//! have not renewed yet (auditor too). Through [`crate::rotation`], like the CLI.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::params::PathId;
use super::{bodies, handle, not_found, read_body, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::rotation;

/// `POST /api/v1/rotations` `{"batch": "B", "by": "7d", "after_deadline": "revoke",
/// "key_exposure": true, "reason": "…"}` → 201 with the rotation and its progress.
pub(super) async fn create(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(&pki, &req, Operation::CreateRotation, "rotation:new", async |caller| {
        let now = crate::issuance::unix(std::time::SystemTime::now());
        let order = bodies::rotation(&read_body(payload).await?, now)?;
        let r = rotation::create(pki.store.as_ref(), order, &caller.actor, Some("api")).await.map_err(Refusal::from)?;
        let progress = pki.store.rotation_progress(&r).await.map_err(Refusal::from)?;
        Ok(HttpResponse::Created().json(rotation::json(&r, Some(progress))))
    })
    .await
}

/// `GET /api/v1/rotations`: the newest 100, with their progress.
pub(super) async fn list(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    handle(&pki, &req, Operation::ReadRotations, "rotations", async |_| {
        let mut out = Vec::new();
        for r in pki.store.list_rotations(100).await.map_err(Refusal::from)? {
            let progress = pki.store.rotation_progress(&r).await.map_err(Refusal::from)?;
            out.push(rotation::json(&r, Some(progress)));
        }
        Ok(HttpResponse::Ok().json(serde_json::json!({ "rotations": out })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingPage {
    #[serde(default)]
    after: String,
    limit: Option<i64>,
}

/// `GET /api/v1/rotations/{id}?after=ID&limit=N`: progress, and the pending devices in
/// id order (`next`: the `after` of the next page).
pub(super) async fn show(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let id = PathId::from_path(&req, "id", "rotation id");
    let target = format!("rotation:{}", id.shown());
    handle(&pki, &req, Operation::ReadRotations, &target, async |_| {
        let id: i64 = id.get()?.parse().map_err(|_| Refusal::bad_request("the rotation id must be a number"))?;
        let page: PendingPage = bodies::query(req.query_string())?;
        let limit = page.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(Refusal::bad_request("limit must be 1 to 10000"));
        }
        if !page.after.is_empty() {
            super::check_identifier("after", &page.after).map_err(Refusal::bad_request)?;
        }
        let r = pki.store.get_rotation(id).await.map_err(Refusal::from)?;
        let r = r.ok_or_else(|| not_found(format!("rotation {id} not found")))?;
        let progress = pki.store.rotation_progress(&r).await.map_err(Refusal::from)?;
        let pending = pki.store.rotation_pending(&r, &page.after, limit).await.map_err(Refusal::from)?;
        let mut v = rotation::json(&r, Some(progress));
        v["next"] =
            if pending.len() as i64 == limit { pending.last().cloned().into() } else { serde_json::Value::Null };
        v["pending_devices"] = pending.into();
        Ok(HttpResponse::Ok().json(v))
    })
    .await
}
