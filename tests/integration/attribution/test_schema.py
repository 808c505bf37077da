"""Migration 0050: existing mappings stay 'manual', the file can run again, the constraints hold."""

from __future__ import annotations

import psycopg
import pytest

from events_pipeline.common.settings import MIGRATIONS_DIR


def test_existing_mappings_stay_manual_and_the_migration_is_idempotent(sync_env):
    db = sync_env
    db.execute("INSERT INTO client_domains (domain, client_id) VALUES ('old.example', 'acme')")

    db.execute((MIGRATIONS_DIR / "0050_attribution_sync.sql").read_text())  # a second time: no effect

    assert db.execute(
        "SELECT source, resolved_at FROM client_domains WHERE domain = 'old.example'"
    ).fetchone() == ("manual", None)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO client_domains (domain, client_id, source) VALUES ('x.example', 'acme', 'robot')",
        "INSERT INTO attribution_negative_cache (site, reason) VALUES ('x.example', 'maybe')",
        "INSERT INTO attribution_sync_problems (kind, domain) VALUES ('oops', 'x.example')",
        "INSERT INTO attribution_sync_runs (status) VALUES ('fine')",
    ],
)
def test_constraints_refuse_unknown_values(sync_env, statement):
    with pytest.raises(psycopg.errors.CheckViolation):
        sync_env.execute(statement)


def test_one_open_problem_per_domain_and_clients(sync_env):
    db = sync_env
    insert = (
        "INSERT INTO attribution_sync_problems (kind, domain, current_client_id, answered_client_id) "
        "VALUES ('unknown_client', 'x.example', NULL, 'zeta')"
    )
    db.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert)
    db.execute("UPDATE attribution_sync_problems SET acknowledged_at = now()")
    db.execute(insert)  # acknowledged ones do not count
    assert db.execute("SELECT count(*) FROM attribution_sync_problems").fetchone()[0] == 2
