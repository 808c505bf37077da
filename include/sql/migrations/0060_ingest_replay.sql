-- Replays of bad input (events_replay, docs/runbook.md#events_replay): a quarantined
-- file or rejected lines, fixed, fed back through ingest as a new landing file whose
-- registry row names the original file; every original line is loaded at most once.
-- Idempotent: every statement can run again without effect.

-- The original file whose lines a replay file carries (NULL: an ordinary landing file).
-- A replay keeps the original's line numbers, so (replay_of, line) names the source line.
ALTER TABLE landing_files ADD COLUMN IF NOT EXISTS replay_of bigint REFERENCES landing_files (file_id);
CREATE INDEX IF NOT EXISTS landing_files_replay_of_idx
    ON landing_files (replay_of)
    WHERE replay_of IS NOT NULL;

-- Provenance and idempotency of replays: one row per original line loaded by a
-- replay, written in that replay's load transaction. The primary key is the
-- idempotency key: a line replayed twice is loaded once.
CREATE TABLE IF NOT EXISTS replayed_lines (
    original_file_id bigint NOT NULL REFERENCES landing_files (file_id),
    line             bigint NOT NULL,
    replay_file_id   bigint NOT NULL REFERENCES landing_files (file_id),
    replayed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (original_file_id, line)
);
CREATE INDEX IF NOT EXISTS replayed_lines_replay_file_idx ON replayed_lines (replay_file_id);
