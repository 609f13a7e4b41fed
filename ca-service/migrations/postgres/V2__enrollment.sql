-- EST enrollment: provisioning stations and their scope; per-device re-provisioning.
ALTER TABLE devices ADD COLUMN reprovision BOOLEAN NOT NULL DEFAULT FALSE;

-- A station authenticates with a certificate from the Station CA whose CN is its name;
-- scope: comma-separated models and batches it may enroll ('*' = any).
CREATE TABLE stations (
    name       TEXT    NOT NULL PRIMARY KEY,
    enabled    BOOLEAN NOT NULL,
    models     TEXT    NOT NULL,
    batches    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
