//! Devices: revoke one device, a batch or a model (with all their certificates), and
//! list a device's certificates.

use actix_web::{web, HttpRequest, HttpResponse};

use super::params::PathId;
use super::{certificate_json, handle, not_found, revoke_endpoint, Operation};
use crate::est::Refusal;
use crate::issuance::Pki;
use crate::revoke::{Revoked, Target};
use crate::store::{DeviceSelector, RevokedCert};

/// What a revoke endpoint answers: the certificate record, or the devices' summary
/// with every certificate it revoked, briefly (a batch may hold a fleet).
pub(super) fn revoked_json(revoked: &Revoked) -> serde_json::Value {
    let (which, devices, certificates) = match revoked {
        Revoked::Certificate(record) => return certificate_json(record),
        Revoked::Devices { which, devices, certificates } => (which, devices, certificates),
    };
    let mut answer = serde_json::json!({
        "revoked_devices": devices,
        "state": "revoked",
        "revoked_certificate_count": certificates.len(),
        "revoked_certificates": certificates.iter().map(revoked_certificate_json).collect::<Vec<_>>(),
    });
    match which {
        DeviceSelector::Device(id) => answer["device_id"] = id.as_str().into(),
        DeviceSelector::Batch(b) => answer["batch"] = b.as_str().into(),
        DeviceSelector::Model(m) => answer["model"] = m.as_str().into(),
    }
    answer
}

fn revoked_certificate_json(c: &RevokedCert) -> serde_json::Value {
    serde_json::json!({
        "issuer": c.issuer,
        "serial": hex::encode(&c.serial),
        "device_id": c.device_id,
        "profile": c.profile,
        "not_after": c.not_after,
        "revoked_at": c.revoked_at,
    })
}

/// `POST /api/v1/devices/{device_id}/revoke` `{"reason": …}`: all its certificates.
pub(super) async fn revoke_device(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let id = PathId::from_path(&req, "device_id", "device id");
    revoke_devices(&pki, &req, payload, id, DeviceSelector::Device).await
}

/// `POST /api/v1/batches/{batch}/revoke`: every device of a batch.
pub(super) async fn revoke_batch(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let id = PathId::from_path(&req, "batch", "batch");
    revoke_devices(&pki, &req, payload, id, DeviceSelector::Batch).await
}

/// `POST /api/v1/models/{model}/revoke`: every device of a model.
pub(super) async fn revoke_model(pki: web::Data<Pki>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let id = PathId::from_path(&req, "model", "model");
    revoke_devices(&pki, &req, payload, id, DeviceSelector::Model).await
}

async fn revoke_devices(
    pki: &Pki,
    req: &HttpRequest,
    payload: web::Payload,
    id: PathId,
    which: fn(String) -> DeviceSelector,
) -> HttpResponse {
    // The audit target in the selector's own form, from the escaped parameter.
    let target = which(id.shown().to_string()).to_string();
    revoke_endpoint(pki, req, payload, Operation::RevokeDevice, &target, || {
        Ok(Target::Devices(which(id.get()?.to_string())))
    })
    .await
}

/// `GET /api/v1/devices/{device_id}/certificates`, newest first.
pub(super) async fn device_certificates(pki: web::Data<Pki>, req: HttpRequest) -> HttpResponse {
    let id = PathId::from_path(&req, "device_id", "device id");
    let target = format!("device:{}", id.shown());
    handle(&pki, &req, Operation::ListDeviceCertificates, &target, async |_| {
        let device = id.get()?;
        if pki.store.get_device(device).await.map_err(Refusal::from)?.is_none() {
            return Err(not_found(format!("device '{device}' not found")));
        }
        let certs = pki.store.certificates_for_device(device).await.map_err(Refusal::from)?;
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "device_id": device,
            "certificates": certs.iter().map(certificate_json).collect::<Vec<_>>(),
        })))
    })
    .await
}
