-- CRLs read their entries from this index alone. The complete CRL of a 10M fleet
-- (1M revoked) took 10 s through certificates_revoked_shard: a million heap reads
-- spread over the whole table, then a sort. Every column the CRL reads is here, so a
-- CRL (complete, shard or delta) is an index-only scan of revoked rows; the service
-- sorts the entries itself. It replaces certificates_revoked_shard (same leading
-- columns, same predicate): issuance writes no index entry more, a revocation the
-- same one, only wider.
DROP INDEX certificates_revoked_shard;
CREATE INDEX certificates_crl ON certificates (issuer, crl_shard, serial_hex)
    INCLUDE (not_after, revoked_at, revocation_reason) WHERE status = 'revoked';
