-- public_key_sha256 is only ever looked up by the compromised-key check, which
-- asks for certificates revoked for keyCompromise. Index just those: issuing a
-- certificate no longer writes this index, and it stays as small as the set of
-- compromised keys instead of one entry per certificate ever issued.
DROP INDEX certificates_public_key_sha256;
CREATE INDEX certificates_compromised_key ON certificates (public_key_sha256)
    WHERE status = 'revoked' AND revocation_reason = 1;
