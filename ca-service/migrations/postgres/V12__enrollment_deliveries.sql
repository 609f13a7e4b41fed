-- Safe retries (invariant 7): a certificate issued to a provisioning station is stored
-- with the SHA-256 of the CSR it answers and the station's name, so that the same
-- station repeating the same request gets this certificate again instead of a refusal
-- (its answer was lost). Only station enrollments set them. No index of their own: a
-- delivery is looked up among the device's certificates (certificates_device_id), so
-- issuance writes no extra index entry (measured: a partial index on request_sha256
-- cost PostgreSQL about 12 us of CPU per enrollment).
ALTER TABLE certificates ADD COLUMN request_sha256 TEXT;
ALTER TABLE certificates ADD COLUMN requested_by TEXT;
