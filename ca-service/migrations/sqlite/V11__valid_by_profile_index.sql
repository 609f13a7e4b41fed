-- The newest valid certificate of a profile under an issuer (the OCSP signer's, at
-- startup) was found through (issuer, status), which matches nearly every row of an
-- issuing CA: PostgreSQL scanned the whole table (86 ms at 300k certificates).
-- Nothing else reads (issuer, status); this index replaces it, so issuance writes
-- the same number of index entries, and the lookup is one backward index step.
DROP INDEX certificates_issuer_status;
CREATE INDEX certificates_valid_by_profile ON certificates (issuer, profile, not_after)
    WHERE status = 'valid';
