-- The backup bucket's visitor index: which exported hours of a client held a visitor,
-- kept after retention deleted the rows (contract §6.5; docs/maintenance.md "Erasure";
-- docs/decisions/maintenance-erasure-every-copy.md). An erasure request purges these
-- hours' backup folders, and only those, without reading the client's whole history.
-- Idempotent: every statement can run again without effect.

-- One row per (client, visitor, exported hour). visitor_digest =
-- sha256(client_id || chr(31) || visitor_id) (UTF-8), as gdpr_erasure_requests and
-- gdpr_erasure_tombstones keep it: the visitor id itself is never stored here.
-- Written by the export in the transaction that marks the hour's rows, from the visitor
-- ids it streamed into the hour's parts (plugins/events_pipeline/export/visitor_index.py,
-- include/sql/export/record_visitors.sql; ON CONFLICT DO NOTHING: a re-run only adds);
-- an erasure request deletes its visitor's rows once their hours are purged
-- (include/sql/erasure/forget_visitor_hours.sql). The primary key serves the one
-- lookup, by (client, digest). The foreign key empties the index with its client.
CREATE TABLE IF NOT EXISTS backup_visitor_hours (
    client_id       text NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    visitor_digest  bytea NOT NULL,
    export_hour     timestamptz NOT NULL,
    PRIMARY KEY (client_id, visitor_digest, export_hour)
);
