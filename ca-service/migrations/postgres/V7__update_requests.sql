-- Update-signing certificates are issued only through a request that two distinct
-- approvers (neither the requester) have approved before it expired. Times are unix
-- seconds. The approvals table's key makes "approve twice" impossible at the
-- database, whatever the caller checks.
CREATE TABLE update_requests (
    id            TEXT    NOT NULL PRIMARY KEY,
    profile       TEXT    NOT NULL,
    csr_der       BYTEA   NOT NULL,
    classes       TEXT    NOT NULL,
    validity_days INTEGER NOT NULL,
    requester     TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'issued')),
    rejected_by   TEXT,
    reason        TEXT,
    issuer        TEXT,
    serial_hex    TEXT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX update_requests_status ON update_requests (status);

CREATE TABLE update_request_approvals (
    request_id  TEXT   NOT NULL REFERENCES update_requests (id),
    approver    TEXT   NOT NULL,
    approved_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'operator', 'auditor', 'provisioning-station', 'release-manager', 'update-approver'));
