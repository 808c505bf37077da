"""A domain the service moves between clients: recorded, alerted, applied only to rows not yet exported.

The move is noticed by the refresh of service mappings; exported rows (and rows
claimed by an export hour) never change; the rows not yet exported reach the
new client through re-attribution and the next export, exactly once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from events_pipeline.attribution.pixel_management import FOUND, Answer
from events_pipeline.attribution.sync import record_answer
from events_pipeline.health.checks import check_attribution_sync
from tests.conftest import task_states
from tests.integration.export.conftest import HOUR, folder, read_hour, run_hour, spread

from .conftest import add_events, clients_of, mapping, now_utc, problems

DAG_ID = "events_attribution_sync"
ROW_COLUMNS = (
    "event_id::text, client_id, export_status, export_hour, processed_at, privacy_level, "
    "host(ip_address), raw_event_data::text"
)


def snapshot(db, where: str) -> list[tuple]:
    """Every column that matters of the rows matching ``where`` (test-only SQL)."""
    return db.execute(f"SELECT {ROW_COLUMNS} FROM events_log WHERE {where} ORDER BY event_id").fetchall()  # noqa: S608


def test_a_move_applies_only_to_rows_not_yet_exported(sync_env, service, run_dag, s3, caplog):
    db = sync_env
    service.domains["news.example"] = "acme"
    exported_ids = add_events(db, "news.example", spread(HOUR, 3), seed=1)
    dr = run_dag(DAG_ID, logical_date=now_utc())
    assert dr.state == "success", task_states(dr)
    assert mapping(db)["news.example"] == ("acme", "pixel_management")
    dr = run_hour(run_dag, HOUR)
    assert dr.state == "success", task_states(dr)
    acme_manifest, _ = read_hour(s3, "client-acme", folder("exports/acme", HOUR))
    assert acme_manifest["row_count"] == 3
    exported_before = snapshot(db, "export_status = 'exported'")

    # Later loads attributed these to acme with the mapping of the time:
    nxt = HOUR + timedelta(hours=1)
    pending_ids = add_events(db, "news.example", spread(nxt, 4), client_id="acme", seed=2)
    sub_ids = add_events(db, "www.news.example", spread(nxt, 2, offset_minutes=1), client_id="acme", seed=3)
    # a sub-domain listed on its own keeps its client
    db.execute("INSERT INTO client_domains (domain, client_id) VALUES ('own.news.example', 'acme')")
    own_ids = add_events(db, "own.news.example", spread(nxt, 2, offset_minutes=2), client_id="acme", seed=4)
    # a row an export hour already claimed (its run failed) belongs to that hour
    claimed = add_events(db, "news.example", spread(HOUR - timedelta(hours=1), 1), client_id="acme", seed=5)
    db.execute(
        "UPDATE events_log SET export_hour = %s WHERE event_id = %s", (HOUR - timedelta(hours=1), claimed[0])
    )
    claimed_before = snapshot(db, f"event_id = '{claimed[0]}'")

    # The service now gives news.example to globex; the mapping is due for a refresh.
    service.domains["news.example"] = "globex"
    db.execute(
        "UPDATE client_domains SET resolved_at = now() - interval '2 days' WHERE domain = 'news.example'"
    )
    with caplog.at_level(logging.ERROR):
        dr = run_dag(DAG_ID, logical_date=now_utc())

    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert mapping(db)["news.example"] == ("globex", "pixel_management")
    assert mapping(db)["own.news.example"] == ("acme", "manual")
    [move] = problems(db)
    assert (move["kind"], move["domain"], move["current_client_id"], move["answered_client_id"]) == (
        "move",
        "news.example",
        "acme",
        "globex",
    )
    assert move["applied"] and move["rows_released"] == 6
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("news.example moved from client acme to client globex" in m for m in errors), errors
    # exported rows and the claimed row are untouched; the others now belong to globex (GDPR-treated)
    assert snapshot(db, "export_status = 'exported'") == exported_before
    assert snapshot(db, f"event_id = '{claimed[0]}'") == claimed_before
    assert clients_of(db, "www.news.example") == {"globex": 2}
    assert clients_of(db, "own.news.example") == {"acme": 2}
    levels = db.execute(
        "SELECT DISTINCT privacy_level FROM events_log WHERE client_id = 'globex' AND site_id LIKE %s",
        ("%news.example",),
    ).fetchall()
    assert levels == [("gdpr",)]
    outcome = check_attribution_sync()
    assert not outcome.ok
    assert "domain news.example moved from client acme to client globex" in outcome.message
    assert "6 unexported row(s) handed over, exported rows untouched" in outcome.message

    # The next export: each row once, at its client.
    dr = run_hour(run_dag, nxt)
    assert dr.state == "success", task_states(dr)
    _, globex = read_hour(s3, "client-globex", folder("globex", nxt))
    assert sorted(globex.column("event_id").to_pylist()) == sorted(pending_ids + sub_ids)
    _, acme = read_hour(s3, "client-acme", folder("exports/acme", nxt))
    assert sorted(acme.column("event_id").to_pylist()) == sorted(own_ids)
    again, acme_first = read_hour(s3, "client-acme", folder("exports/acme", HOUR))
    assert again == acme_manifest  # the published hour is unchanged
    assert sorted(acme_first.column("event_id").to_pylist()) == sorted(exported_ids)

    # Acknowledged, the check passes again.
    db.execute("UPDATE attribution_sync_problems SET acknowledged_at = now(), acknowledged_by = 'test'")
    assert check_attribution_sync().ok


def test_rows_loaded_with_the_old_mapping_right_after_a_move_follow_it(sync_env, service, run_dag):
    db = sync_env
    service.domains["late.example"] = "acme"
    add_events(db, "late.example", spread(HOUR, 1), seed=1)
    run_dag(DAG_ID, logical_date=now_utc())
    service.domains["late.example"] = "globex"
    db.execute("UPDATE client_domains SET resolved_at = now() - interval '2 days'")
    run_dag(DAG_ID, logical_date=now_utc())
    assert clients_of(db, "late.example") == {"globex": 1}

    # a load that read the old mapping commits after the move
    add_events(db, "late.example", spread(HOUR + timedelta(hours=1), 2), client_id="acme", seed=2)
    asked = len(service.requests)
    dr = run_dag(DAG_ID, logical_date=now_utc())

    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert len(service.requests) == asked  # nothing asked: the release follows the recorded move
    assert clients_of(db, "late.example") == {"globex": 3}
    assert problems(db)[0]["rows_released"] == 3


def test_a_manual_mapping_is_never_overridden_by_the_service(sync_env):
    db = sync_env
    db.execute("INSERT INTO client_domains (domain, client_id) VALUES ('manual.example', 'acme')")

    decision = record_answer(db, Answer("manual.example", FOUND, "globex"), run_id="manual-test")

    assert (decision.outcome, decision.problem, decision.applied) == ("problem", "move", False)
    assert mapping(db) == {"manual.example": ("acme", "manual")}
    [p] = problems(db)
    assert (p["current_client_id"], p["answered_client_id"], p["applied"], p["airflow_run_id"]) == (
        "acme",
        "globex",
        False,
        "manual-test",
    )
    assert db.execute("SELECT reason FROM attribution_negative_cache").fetchall() == [("move",)]
    # the same answer again counts, it does not add a row
    record_answer(db, Answer("manual.example", FOUND, "globex"))
    assert [(p["occurrences"]) for p in problems(db)] == [2]
    assert "manual mapping to client acme kept" in check_attribution_sync().message


def test_a_withdrawn_service_mapping_is_kept_and_reported(sync_env):
    db = sync_env
    db.execute(
        "INSERT INTO client_domains (domain, client_id, source, resolved_at) "
        "VALUES ('gone.example', 'acme', 'pixel_management', now() - interval '2 days')"
    )

    decision = record_answer(db, Answer("gone.example", "not_found", None, "HTTP 404"))

    assert (decision.outcome, decision.problem) == ("problem", "withdrawn")
    assert mapping(db) == {"gone.example": ("acme", "pixel_management")}
    assert "domain gone.example: service no longer knows it (404), still mapped to client acme" in (
        check_attribution_sync().message
    )
