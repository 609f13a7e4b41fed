-- EST enrollment: provisioning stations and their scope; per-device re-provisioning.
ALTER TABLE devices ADD COLUMN reprovision INTEGER NOT NULL DEFAULT 0 CHECK (reprovision IN (0, 1));

-- A station authenticates with a certificate from the Station CA whose CN is its name;
-- scope: comma-separated models and batches it may enroll ('*' = any).
CREATE TABLE stations (
    name       TEXT    NOT NULL PRIMARY KEY,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    models     TEXT    NOT NULL,
    batches    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
