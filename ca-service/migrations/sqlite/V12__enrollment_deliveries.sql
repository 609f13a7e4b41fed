-- Safe retries (invariant 7): a certificate issued to a provisioning station is stored
-- with the SHA-256 of the CSR it answers and the station's name, so that the same
-- station repeating the same request gets this certificate again instead of a refusal
-- (its answer was lost). Only station enrollments set them (first enrollments,
-- re-provisioning and serverkeygen replacements): renewals and CA-internal
-- certificates add nothing to the partial index.
ALTER TABLE certificates ADD COLUMN request_sha256 TEXT;
ALTER TABLE certificates ADD COLUMN requested_by TEXT;
CREATE INDEX certificates_by_request ON certificates (request_sha256) WHERE request_sha256 IS NOT NULL;
