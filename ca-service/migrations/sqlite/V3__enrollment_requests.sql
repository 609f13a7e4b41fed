-- Manual approval: an enrollment request waits here until an operator decides.
-- id = SHA-256 of the CSR, so the station's retry of the same request finds it.
CREATE TABLE enrollment_requests (
    id          TEXT    NOT NULL PRIMARY KEY,
    profile     TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    requester   TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'issued')),
    decided_by  TEXT,
    issuer      TEXT,
    serial_hex  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX enrollment_requests_status ON enrollment_requests (status);
