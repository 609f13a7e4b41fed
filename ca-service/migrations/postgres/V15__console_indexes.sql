-- The operator console's searches, paged by a key the index also orders by.
--
-- Devices of a batch or a model, paged by id: the second column lets a page start
-- at the last id seen and stop after `limit` rows, instead of reading the whole
-- batch and sorting it. The leading column is unchanged, so revoking a batch or a
-- model (and its preview) keeps using these; they replace the one-column indexes,
-- so registering a device writes no more index entries than before.
DROP INDEX devices_batch;
DROP INDEX devices_model;
CREATE INDEX devices_batch_id ON devices (batch, device_id);
CREATE INDEX devices_model_id ON devices (model, device_id);
-- The audit trail of one target, actor or action, newest first and paged by seq:
-- one backward index range each, never a walk of the whole log. Every audited
-- write adds one entry to each of them (three index entries per audit entry).
-- Built inside the migration's transaction (not CONCURRENTLY): writes to devices and
-- audit_log wait until they are built (about a second per index per million
-- audit entries, measured on 2 vCPU).
CREATE INDEX audit_log_target_seq ON audit_log (target, seq);
CREATE INDEX audit_log_actor_seq ON audit_log (actor, seq);
CREATE INDEX audit_log_action_seq ON audit_log (action, seq);
