//! The OpenAPI 3 document of the admin API, served unauthenticated. Its `x-roles` come
//! from the role table, so the document cannot disagree with what the API enforces; a
//! test checks it lists every routed path.

use actix_web::HttpResponse;

use super::{allowed, Operation, MAX_AUDIT_PAGE};

/// `GET /api/v1/openapi.json`: served to anyone, unauthenticated.
pub(super) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(openapi_document())
}

/// The OpenAPI 3 document of this API (hand-written with `serde_json`).
pub fn openapi_document() -> serde_json::Value {
    use serde_json::json;
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let std_errors = |mut responses: serde_json::Map<String, serde_json::Value>| {
        responses.insert("401".into(), err("missing, invalid or revoked API token"));
        responses.insert("403".into(), err("the token's role may not do this"));
        responses.insert("404".into(), err("not found"));
        responses.insert("429".into(), err("too many failed attempts from this address; see Retry-After"));
        serde_json::Value::Object(responses)
    };
    let ok = |schema: &str| {
        let mut m = serde_json::Map::new();
        m.insert(
            "200".into(),
            json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
        );
        m
    };
    let roles = |op: Operation| allowed(op).iter().map(|r| r.as_str()).collect::<Vec<_>>();
    let revoke_body = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/RevokeRequest" } } } });
    let p = |name: &str| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } });
    let mut revoke_responses = ok("Certificate");
    revoke_responses.insert("400".into(), err("bad reason, serial or JSON"));
    revoke_responses.insert("409".into(), err("already revoked"));
    let mut device_revoke_responses = ok("DeviceRevocation");
    device_revoke_responses.insert("400".into(), err("bad reason or JSON"));
    let mut update_responses = ok("UpdateRequest");
    update_responses.insert("400".into(), err("bad CSR, class, validity or JSON"));
    update_responses.insert("409".into(), err("not pending, expired, the requester approving, or approved twice"));
    let json_body = |schema: &str| json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    let mut audit_responses = ok("AuditPage");
    audit_responses.insert("400".into(), err("bad query"));
    // Added after: one json! of the whole document exceeds the macro recursion limit.
    let report_schema = json!({ "type": "object", "description": "CSV (format=csv): the same columns, a header line first, the next cursor in X-Next-Cursor",
                    "properties": { "report": { "type": "string" },
                    "rows": { "type": "array", "items": { "type": "object" } },
                    "next": { "type": "string", "nullable": true } } });
    let reports_path = json!({ "get": {
                "summary": "A lifecycle report (counts, expiring, stale, never-enrolled), paged, JSON or CSV",
                "x-roles": roles(Operation::ReadReports),
                "parameters": [
                    { "name": "report", "in": "path", "required": true,
                      "schema": { "type": "string", "enum": ["counts", "expiring", "stale", "never-enrolled"] } },
                    { "name": "within", "in": "query", "description": "expiring: 30d, 12h, 90m or seconds",
                      "schema": { "type": "string", "default": "30d" } },
                    { "name": "group_by", "in": "query", "schema": { "type": "string", "enum": ["batch", "model", "profile", "issuer"] } },
                    { "name": "profile", "in": "query", "schema": { "type": "string" } },
                    { "name": "issuer", "in": "query", "schema": { "type": "string" } },
                    { "name": "batch", "in": "query", "schema": { "type": "string" } },
                    { "name": "model", "in": "query", "schema": { "type": "string" } },
                    { "name": "after", "in": "query", "description": "the previous page's next", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1,
                      "maximum": crate::reports::MAX_LIMIT, "default": crate::reports::DEFAULT_LIMIT } },
                    { "name": "format", "in": "query", "schema": { "type": "string", "enum": ["json", "csv"], "default": "json" } }
                ],
                "responses": std_errors(ok("Report")) } });
    let mut rotations = json!({
            "/rotations": {
                "post": { "summary": "Rotate a device, a batch or a model: renewal window now … by; at the deadline \
                    nothing or revoke (superseded)", "x-roles": roles(Operation::CreateRotation),
                    "requestBody": json_body("NewRotation"), "responses": std_errors(ok("Rotation")) },
                "get": { "summary": "The newest rotations with their progress", "x-roles": roles(Operation::ReadRotations),
                    "responses": std_errors(ok("RotationList")) } },
            "/rotations/{id}": { "get": {
                "summary": "A rotation's progress and the devices not yet renewed (paged by id)",
                "x-roles": roles(Operation::ReadRotations),
                "parameters": [p("id"),
                    { "name": "after", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 } }],
                "responses": std_errors(ok("Rotation")) } }
    });
    let mut rotation_schemas = json!({
                "NewRotation": { "type": "object", "required": ["by"], "properties": {
                    "device": { "type": "string" }, "batch": { "type": "string" }, "model": { "type": "string" },
                    "by": { "type": "string", "description": "RFC 3339, or from now: 7d, 12h, 90m" },
                    "reason": { "type": "string", "maxLength": 512 },
                    "after_deadline": { "type": "string", "enum": ["nothing", "revoke"], "default": "nothing" },
                    "key_exposure": { "type": "boolean", "default": false } } },
                "Rotation": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "scope": { "type": "string" },
                    "opened_at": { "type": "string", "format": "date-time" },
                    "deadline": { "type": "string", "format": "date-time" },
                    "after_deadline": { "type": "string" }, "key_exposure": { "type": "boolean" },
                    "reason": { "type": "string" }, "created_by": { "type": "string" },
                    "state": { "type": "string", "enum": ["open", "closed"] },
                    "closed_at": { "type": ["string", "null"], "format": "date-time" },
                    "revoked_at_deadline": { "type": ["integer", "null"] },
                    "devices": { "type": "integer" }, "replaced": { "type": "integer" }, "pending": { "type": "integer" },
                    "pending_devices": { "type": "array", "items": { "type": "string" } },
                    "next": { "type": ["string", "null"] } } },
                "RotationList": { "type": "object", "properties": {
                    "rotations": { "type": "array", "items": { "$ref": "#/components/schemas/Rotation" } } } }
    });
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "Device PKI admin API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": {
            "/certificates/{issuer}/{serial}/revoke": { "post": {
                "summary": "Revoke a certificate", "x-roles": roles(Operation::RevokeCertificate),
                "parameters": [p("issuer"), p("serial")], "requestBody": revoke_body,
                "responses": std_errors(revoke_responses) } },
            "/certificates/{issuer}/{serial}": { "get": {
                "summary": "Read a certificate record", "x-roles": roles(Operation::ReadCertificate),
                "parameters": [p("issuer"), p("serial")], "responses": std_errors(ok("Certificate")) } },
            "/devices/{device_id}/revoke": { "post": {
                "summary": "Revoke a device and all its certificates", "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("device_id")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/batches/{batch}/revoke": { "post": {
                "summary": "Revoke every device of a batch and all their certificates",
                "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("batch")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/models/{model}/revoke": { "post": {
                "summary": "Revoke every device of a model and all their certificates",
                "x-roles": roles(Operation::RevokeDevice),
                "parameters": [p("model")], "requestBody": revoke_body,
                "responses": std_errors(device_revoke_responses.clone()) } },
            "/update-requests": {
                "post": { "summary": "Request an update-signing certificate (two approvers needed)",
                    "x-roles": roles(Operation::SubmitUpdateRequest), "requestBody": json_body("NewUpdateRequest"),
                    "responses": std_errors(update_responses.clone()) },
                "get": { "summary": "List update-signing requests", "x-roles": roles(Operation::ReadUpdateRequests),
                    "parameters": [{ "name": "status", "in": "query", "schema": { "type": "string",
                        "enum": ["pending", "approved", "rejected", "issued"] } }],
                    "responses": std_errors(ok("UpdateRequestList")) } },
            "/update-requests/{id}": { "get": {
                "summary": "Read an update-signing request (with its certificate and tlog-proof once issued)",
                "x-roles": roles(Operation::ReadUpdateRequests),
                "parameters": [p("id")], "responses": std_errors(ok("UpdateRequest")) } },
            "/update-requests/{id}/approve": { "post": {
                "summary": "Approve; the last required approval signs the certificate",
                "x-roles": roles(Operation::ApproveUpdateRequest),
                "parameters": [p("id")], "responses": std_errors(update_responses.clone()) } },
            "/update-requests/{id}/reject": { "post": {
                "summary": "Reject for good", "x-roles": roles(Operation::RejectUpdateRequest),
                "parameters": [p("id")], "requestBody": json_body("RejectRequest"),
                "responses": std_errors(update_responses.clone()) } },
            "/update-requests/{id}/sign": { "post": {
                "summary": "Sign an approved request whose signing did not complete",
                "x-roles": roles(Operation::SignUpdateRequest),
                "parameters": [p("id")], "responses": std_errors(update_responses) } },
            "/devices/{device_id}/certificates": { "get": {
                "summary": "A device's certificates, newest first", "x-roles": roles(Operation::ListDeviceCertificates),
                "parameters": [p("device_id")], "responses": std_errors(ok("DeviceCertificates")) } },
            "/audit": { "get": {
                "summary": "Audit log entries after a sequence number", "x-roles": roles(Operation::ReadAudit),
                "parameters": [
                    { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": MAX_AUDIT_PAGE, "default": 100 } }
                ],
                "responses": std_errors(audit_responses) } },
            "/openapi.json": { "get": { "summary": "This document", "security": [],
                "responses": { "200": { "description": "OpenAPI 3 document" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "pki_<id>.<secret>" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } } },
                "RevokeRequest": { "type": "object", "required": ["reason"], "properties": {
                    "reason": { "type": "string", "enum": ["unspecified", "keyCompromise", "cACompromise",
                        "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold",
                        "privilegeWithdrawn", "aACompromise"] } } },
                "Certificate": { "type": "object", "properties": {
                    "issuer": { "type": "string" }, "serial": { "type": "string" }, "subject": { "type": "string" },
                    "device_id": { "type": "string", "nullable": true }, "profile": { "type": "string" },
                    "not_before": { "type": "integer" }, "not_after": { "type": "integer" },
                    "status": { "type": "string", "enum": ["valid", "revoked", "superseded"] },
                    "revoked_at": { "type": "integer", "nullable": true },
                    "revocation_reason": { "type": "string", "nullable": true },
                    "fingerprint_sha256": { "type": "string" } } },
                "DeviceCertificates": { "type": "object", "properties": { "device_id": { "type": "string" },
                    "certificates": { "type": "array", "items": { "$ref": "#/components/schemas/Certificate" } } } },
                "DeviceRevocation": { "type": "object", "properties": { "device_id": { "type": "string" },
                    "batch": { "type": "string" }, "model": { "type": "string" },
                    "revoked_devices": { "type": "integer" }, "state": { "type": "string" },
                    "revoked_certificate_count": { "type": "integer" },
                    "revoked_certificates": { "type": "array", "items": { "$ref": "#/components/schemas/RevokedCertificate" } } } },
                "NewUpdateRequest": { "type": "object", "required": ["csr", "classes"], "properties": {
                    "csr": { "type": "string", "description": "PKCS#10, PEM" },
                    "classes": { "type": "array", "items": { "type": "string" } },
                    "validity_days": { "type": "integer", "minimum": 1 } } },
                "RejectRequest": { "type": "object", "required": ["reason"], "properties": {
                    "reason": { "type": "string", "maxLength": 500 } } },
                "UpdateRequest": { "type": "object", "properties": {
                    "id": { "type": "string" },
                    "status": { "type": "string", "enum": ["pending", "approved", "rejected", "issued"] },
                    "expired": { "type": "boolean" }, "requester": { "type": "string" },
                    "classes": { "type": "array", "items": { "type": "string" } },
                    "class_policy_oids": { "type": "array", "items": { "type": "string" } },
                    "validity_days": { "type": "integer" },
                    "approvals": { "type": "array", "items": { "type": "string" } },
                    "approvals_required": { "type": "integer" },
                    "rejected_by": { "type": "string", "nullable": true },
                    "reason": { "type": "string", "nullable": true },
                    "created_at": { "type": "integer" }, "expires_at": { "type": "integer" },
                    "issuer": { "type": "string" }, "serial": { "type": "string" },
                    "certificate": { "type": "string", "description": "PEM, once issued" },
                    "chain": { "type": "string", "description": "PEM of the issuing CA, once issued" },
                    "tlog_proof": { "type": "string", "description": "C2SP tlog-proof that the certificate's issuance (its certificate.issue entry, in the proof's extra) is in the transparency log; in the answers of approve, sign and GET once issued (not in lists). Ship it with the update signature (`ota sign --proof`)" },
                    "tlog_proof_error": { "type": "string", "description": "Why tlog_proof is missing (e.g. no checkpoint yet); GET the request again" },
                    "signing_error": { "type": "string", "description": "approve: the quorum is met but signing was refused" } } },
                "UpdateRequestList": { "type": "object", "properties": {
                    "requests": { "type": "array", "items": { "$ref": "#/components/schemas/UpdateRequest" } } } },
                "AuditPage": { "type": "object", "properties": {
                    "next_after": { "type": "integer", "nullable": true },
                    "entries": { "type": "array", "items": { "type": "object", "properties": {
                        "seq": { "type": "integer" }, "time_us": { "type": "integer" }, "actor": { "type": "string" },
                        "action": { "type": "string" }, "target": { "type": "string" }, "outcome": { "type": "string" },
                        "details": {}, "leaf_hash": { "type": "string" } } } } } }
            }
        }
    });
    doc["paths"]["/reports/{report}"] = reports_path;
    doc["components"]["schemas"]["Report"] = report_schema;
    doc["components"]["schemas"]["RevokedCertificate"] = json!({ "type": "object", "properties": {
        "issuer": { "type": "string" }, "serial": { "type": "string" },
        "device_id": { "type": "string", "nullable": true }, "profile": { "type": "string" },
        "not_after": { "type": "integer" }, "revoked_at": { "type": "integer" } } });
    doc["paths"]["/rotations"] = rotations["/rotations"].take();
    doc["paths"]["/rotations/{id}"] = rotations["/rotations/{id}"].take();
    for (name, schema) in rotation_schemas.as_object_mut().map(std::mem::take).unwrap_or_default() {
        doc["components"]["schemas"][name] = schema;
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_path() {
        let doc = openapi_document();
        let paths = doc["paths"].as_object().unwrap();
        // Every route `routes` registers.
        let routed = [
            "/openapi.json",
            "/certificates/{issuer}/{serial}/revoke",
            "/certificates/{issuer}/{serial}",
            "/devices/{device_id}/revoke",
            "/batches/{batch}/revoke",
            "/models/{model}/revoke",
            "/devices/{device_id}/certificates",
            "/audit",
            "/reports/{report}",
            "/update-requests",
            "/update-requests/{id}",
            "/update-requests/{id}/approve",
            "/update-requests/{id}/reject",
            "/update-requests/{id}/sign",
            "/rotations",
            "/rotations/{id}",
        ];
        for p in routed {
            assert!(paths.contains_key(p), "{p}");
        }
        assert_eq!(paths.len(), routed.len(), "documented paths that are not routed");
    }
}
