-- Counts by state and lifecycle reports (certificates expiring in a window) read
-- this index only, never the certificate rows: status and notAfter lead (the
-- expiring report's range), issuer and profile complete the counts' groups.
CREATE INDEX certificates_lifecycle ON certificates (status, not_after, issuer, profile);
-- Devices registered and never enrolled, paged by id; and devices counted by state.
CREATE INDEX devices_state ON devices (state, device_id);
