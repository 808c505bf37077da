-- GDPR sweep bookkeeping (docs/decisions/maintenance-gdpr-sweep.md): per client, what
-- its last completed sweep covered, so the daily sweep reads only the rows that can
-- still hold a raw IP (rows created since that sweep) instead of every stored row.
--
-- level_changes counts the client's creation and every change of its privacy_level
-- (kept by the trigger below, in the transaction that changes the client). A full
-- pass over every partition is due for a client whose last completed sweep saw fewer
-- changes than there are (covered_changes < level_changes: it switched since, and rows
-- stored or attributed while it was 'standard' may hold raw IPs at any age), whose last
-- sweep ran under an older treatment rule (rule_version), or that was never swept.
-- Otherwise the sweep reads only rows created at or after swept_from.
-- Idempotent: every statement can run again without effect.

CREATE TABLE IF NOT EXISTS gdpr_sweep_state (
    client_id          text PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
    level_changes      bigint NOT NULL DEFAULT 0,
    covered_changes    bigint,       -- level_changes when the last completed sweep started
    rule_version       integer,      -- treatment rule of the last completed sweep
    swept_from         timestamptz,  -- rows created before it were covered by that sweep
    swept_at           timestamptz,  -- when that sweep finished
    full_pass_at       timestamptz   -- when the last full pass finished
);

CREATE OR REPLACE FUNCTION gdpr_sweep_count_level_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.privacy_level IS NOT DISTINCT FROM OLD.privacy_level THEN
        RETURN NULL;
    END IF;
    INSERT INTO gdpr_sweep_state (client_id, level_changes) VALUES (NEW.client_id, 1)
    ON CONFLICT (client_id) DO UPDATE SET level_changes = gdpr_sweep_state.level_changes + 1;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS clients_gdpr_sweep_level_change ON clients;
CREATE TRIGGER clients_gdpr_sweep_level_change
    AFTER INSERT OR UPDATE OF privacy_level ON clients
    FOR EACH ROW EXECUTE FUNCTION gdpr_sweep_count_level_change();
