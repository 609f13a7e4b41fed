-- Safe retries (invariant 7): a certificate issued to a provisioning station is stored
-- with the SHA-256 of the CSR it answers and the station's name, so that the same
-- station repeating the same request gets this certificate again instead of a refusal
-- (its answer was lost). Only station enrollments set them: the partial index holds
-- one entry per enrolled device, nothing for renewals or CA-internal certificates.
ALTER TABLE certificates ADD COLUMN request_sha256 TEXT;
ALTER TABLE certificates ADD COLUMN requested_by TEXT;
CREATE INDEX certificates_by_request ON certificates (request_sha256) WHERE request_sha256 IS NOT NULL;
