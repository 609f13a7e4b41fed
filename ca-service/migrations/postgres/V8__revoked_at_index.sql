-- The OCSP responder polls for revocations made by other instances or the CLI
-- (`revoked_at >= watermark`); only revoked rows are indexed.
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
