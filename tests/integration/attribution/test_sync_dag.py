"""events_attribution_sync through dag.test(), against a real HTTP service and the real PostgreSQL.

Resolution (a site, a sub-domain), the negative cache and its TTL, retries
(500 then success, 429 with Retry-After, a timeout), bounded concurrency,
answers that do not fit (unknown client, malformed body), the skip without the
connection, refused credentials; then re-attribution and the next export
deliver the waiting rows to the right client exactly once.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from events_pipeline.health.checks import check_attribution_sync
from tests.conftest import task_states
from tests.integration.export.conftest import HOUR, folder, list_keys, read_hour, run_hour, spread

from .conftest import (
    API_KEY,
    TOKEN,
    Reply,
    add_events,
    clients_of,
    connection_json,
    last_run,
    mapping,
    now_utc,
    problems,
)

DAG_ID = "events_attribution_sync"


def run_sync(run_dag: Any) -> Any:
    """Run the sync DAG once; return the DagRun."""
    return run_dag(DAG_ID, logical_date=now_utc())


def test_a_site_and_a_sub_domain_are_resolved_then_exported_once(sync_env, service, run_dag, s3):
    db = sync_env
    acme_ids = add_events(db, "acme.com", spread(HOUR, 5), seed=1)
    shop_ids = add_events(db, "shop.acme.com", spread(HOUR, 7, offset_minutes=1), seed=2)
    globex_ids = add_events(db, "globex.de", spread(HOUR, 4, offset_minutes=2), seed=3)
    add_events(db, "unknown.example.org", spread(HOUR, 3, offset_minutes=3), seed=4)
    already = add_events(db, "www.acme.com", spread(HOUR, 2, offset_minutes=4), client_id="acme", seed=5)

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    # the exact site is asked, and the mapping is stored for exactly the answered site
    assert mapping(db) == {
        "acme.com": ("acme", "pixel_management"),
        "shop.acme.com": ("acme", "pixel_management"),
        "globex.de": ("globex", "pixel_management"),
    }
    assert {r.site for r in service.requests} == {
        "acme.com",
        "shop.acme.com",
        "globex.de",
        "unknown.example.org",
    }
    for r in service.requests:  # the token as Bearer, the extra header from the connection
        assert r.headers["Authorization"] == f"Bearer {TOKEN}"
        assert r.headers["X-Api-Key"] == API_KEY
    assert clients_of(db, "shop.acme.com") == {"acme": 7}
    assert clients_of(db, "globex.de") == {"globex": 4}
    assert clients_of(db, "unknown.example.org") == {None: 3}
    # GDPR treatment came with the client (re-attribution): no raw IP left
    for ip, raw, level in db.execute(
        "SELECT host(ip_address), raw_event_data::text, privacy_level FROM events_log "
        "WHERE site_id = 'globex.de'"
    ):
        assert level == "gdpr"
        assert ip is None or ip.endswith(".0") or ip.endswith("::"), ip
        assert json.loads(raw).get("ip_address") in (None, ip)
    cached = db.execute("SELECT site, reason FROM attribution_negative_cache").fetchall()
    assert cached == [("unknown.example.org", "not_found")]
    run = last_run(db)
    assert (run["status"], run["sites_asked"], run["mapped"], run["not_found"], run["errors"]) == (
        "ok",
        4,
        3,
        1,
        0,
    )
    assert run["reattributed_at"] is not None

    # The next export delivers the waiting rows to their client, exactly once.
    dr = run_hour(run_dag, HOUR)
    assert dr.state == "success", task_states(dr)
    _, acme = read_hour(s3, "client-acme", folder("exports/acme", HOUR))
    assert sorted(acme.column("event_id").to_pylist()) == sorted(acme_ids + shop_ids + already)
    _, globex = read_hour(s3, "client-globex", folder("globex", HOUR))
    assert sorted(globex.column("event_id").to_pylist()) == sorted(globex_ids)
    assert db.execute("SELECT count(*) FROM events_log WHERE export_status = 'exported'").fetchone()[0] == 18

    # A second sync asks nothing (mapped sites are matched locally, the unknown one is cached)
    asked = len(service.requests)
    dr = run_sync(run_dag)
    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "skipped"}
    assert len(service.requests) == asked
    # and the next hour's export does not deliver anything twice
    dr = run_hour(run_dag, HOUR + timedelta(hours=1))
    assert dr.state == "success", task_states(dr)
    manifest, _ = read_hour(s3, "client-acme", folder("exports/acme", HOUR + timedelta(hours=1)))
    assert manifest["row_count"] == 0


def test_a_sub_domain_alone_maps_only_itself(sync_env, service, run_dag):
    db = sync_env
    add_events(db, "a.shop.acme.com", spread(HOUR, 3))

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert [r.site for r in service.requests] == ["a.shop.acme.com"]
    assert mapping(db) == {"a.shop.acme.com": ("acme", "pixel_management")}
    assert clients_of(db, "a.shop.acme.com") == {"acme": 3}


def test_not_found_is_remembered_until_the_ttl_expires(sync_env, service, run_dag, monkeypatch):
    db = sync_env
    add_events(db, "nobody.example", spread(HOUR, 2))

    run_sync(run_dag)
    assert service.asked("nobody.example") == 1
    run_sync(run_dag)
    assert service.asked("nobody.example") == 1, "asked again inside the TTL"

    # 61 minutes later: past the default TTL (60), asked again
    db.execute("UPDATE attribution_negative_cache SET checked_at = now() - interval '61 minutes'")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_NEGATIVE_TTL_MINUTES", "120")
    run_sync(run_dag)
    assert service.asked("nobody.example") == 1, "a longer TTL Variable keeps it cached"
    monkeypatch.delenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_NEGATIVE_TTL_MINUTES")
    dr = run_sync(run_dag)
    assert dr.state == "success", task_states(dr)
    assert service.asked("nobody.example") == 2
    assert db.execute("SELECT checks FROM attribution_negative_cache").fetchone()[0] == 2
    assert clients_of(db, "nobody.example") == {None: 2}


def test_server_errors_are_retried_until_an_answer(sync_env, service, run_dag):
    db = sync_env
    add_events(db, "globex.de", spread(HOUR, 2))
    service.script("globex.de", Reply(500, "boom"), Reply(503, "busy"))

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert service.asked("globex.de") == 3
    assert mapping(db) == {"globex.de": ("globex", "pixel_management")}
    assert clients_of(db, "globex.de") == {"globex": 2}
    assert last_run(db)["status"] == "ok"


def test_429_waits_for_retry_after(sync_env, service, run_dag):
    db = sync_env
    add_events(db, "acme.com", spread(HOUR, 2))
    service.script("acme.com", Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}))

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    first, second = service.times("acme.com")
    assert second - first >= 0.95, f"retried after {second - first:.2f} s, Retry-After said 1 s"
    assert mapping(db) == {"acme.com": ("acme", "pixel_management")}


def test_a_timeout_is_an_error_and_the_site_is_asked_again_next_run(sync_env, service, run_dag, monkeypatch):
    db = sync_env
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_MAX_RETRIES", "1")
    add_events(db, "acme.com", spread(HOUR, 2))
    service.script("acme.com", Reply(delay=1.5), Reply(delay=1.5))

    dr = run_sync(run_dag)

    # the run itself succeeds (ingest and other sites are not held up); the error is recorded
    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "skipped"}
    assert service.asked("acme.com") == 2
    run = last_run(db)
    assert (run["status"], run["errors"], run["sites_waiting"]) == ("errors", 1, 1)
    assert "acme.com" in run["error_sample"] and "timeout after 0.3 s" in run["error_sample"]
    assert mapping(db) == {}
    assert db.execute("SELECT count(*) FROM attribution_negative_cache").fetchone()[0] == 0
    outcome = check_attribution_sync()
    assert not outcome.ok
    assert "last attribution sync without errors: never" in outcome.message
    assert "events_attribution_sync_max_age_minutes = 30" in outcome.message
    assert "acme.com" in outcome.message and "timeout" in outcome.message

    dr = run_sync(run_dag)  # the service answers in time now

    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert service.asked("acme.com") == 3
    assert clients_of(db, "acme.com") == {"acme": 2}
    assert check_attribution_sync().ok


def test_requests_run_in_parallel_up_to_the_concurrency(sync_env, service, run_dag, monkeypatch):
    db = sync_env
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_ATTRIBUTION_CONCURRENCY", "3")
    sites = [f"s{i}.acme.com" for i in range(9)]
    for i, site in enumerate(sites):
        add_events(db, site, spread(HOUR, 1), seed=i)
        service.script(site, Reply(200, {"client_id": "acme"}, delay=0.3))

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert service.max_in_flight == 3
    assert {d for d, (c, _) in mapping(db).items() if c == "acme"} == set(sites)


def test_unknown_client_is_recorded_not_applied_and_alerted(sync_env, service, run_dag, caplog):
    db = sync_env
    add_events(db, "zeta-shop.example", spread(HOUR, 3))
    service.domains["zeta-shop.example"] = "zeta"

    with caplog.at_level(logging.ERROR):
        dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert mapping(db) == {}
    assert clients_of(db, "zeta-shop.example") == {None: 3}
    [p] = problems(db)
    assert (p["kind"], p["domain"], p["current_client_id"], p["answered_client_id"], p["applied"]) == (
        "unknown_client",
        "zeta-shop.example",
        None,
        "zeta",
        False,
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("zeta-shop.example" in m and "client zeta" in m and "not in clients" in m for m in errors), (
        errors
    )
    outcome = check_attribution_sync()
    assert not outcome.ok
    assert outcome.message.startswith(
        "check_attribution_sync [runbook: docs/runbook.md#check_attribution_sync]"
    )
    assert "domain zeta-shop.example: service answered client zeta, unknown in clients" in outcome.message

    # Not asked again every run...
    run_sync(run_dag)
    assert service.asked("zeta-shop.example") == 1
    # ...until the TTL: by then the client exists, the answer is applied and the problem settles.
    db.execute(
        "INSERT INTO clients (client_id, name, export_bucket, export_prefix) "
        "VALUES ('zeta', 'Zeta', 'client-acme', 'exports/zeta')"
    )
    db.execute("UPDATE attribution_negative_cache SET checked_at = now() - interval '2 hours'")
    dr = run_sync(run_dag)
    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert clients_of(db, "zeta-shop.example") == {"zeta": 3}
    assert problems(db) == []
    assert check_attribution_sync().ok


def test_malformed_answers_are_recorded_not_applied(sync_env, service, run_dag):
    db = sync_env
    add_events(db, "acme.com", spread(HOUR, 1), seed=1)
    add_events(db, "globex.de", spread(HOUR, 1), seed=2)
    service.script("acme.com", Reply(200, "<html>maintenance</html>"))
    service.script("globex.de", Reply(200, {"client": "globex"}))

    dr = run_sync(run_dag)

    assert dr.state == "success", task_states(dr)
    assert mapping(db) == {}
    found = {p["domain"]: p for p in problems(db)}
    assert set(found) == {"acme.com", "globex.de"}
    assert all(p["kind"] == "malformed" and not p["applied"] for p in found.values())
    assert "body is not JSON" in found["acme.com"]["detail"]
    assert "no string client_id" in found["globex.de"]["detail"]
    message = check_attribution_sync().message
    assert "domain acme.com: malformed answer" in message and "domain globex.de: malformed answer" in message


def test_without_the_connection_the_dag_skips_with_one_line(sync_env, run_dag, monkeypatch, caplog):
    db = sync_env
    monkeypatch.delenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", raising=False)
    add_events(db, "acme.com", spread(HOUR, 2))

    with caplog.at_level(logging.INFO):
        dr = run_sync(run_dag)

    assert task_states(dr) == {"resolve_sites": "skipped", "reattribute_waiting_rows": "skipped"}
    assert dr.state == "success"
    lines = [r.getMessage() for r in caplog.records if "'pixel_management' is not defined" in r.getMessage()]
    assert lines, "no log line names the missing connection"
    assert "attribution sync is off" in lines[0]
    assert db.execute("SELECT count(*) FROM attribution_sync_runs").fetchone()[0] == 0
    assert mapping(db) == {} and clients_of(db, "acme.com") == {None: 2}
    assert check_attribution_sync().ok


def test_refused_credentials_fail_the_task_naming_the_connection(sync_env, service, run_dag, monkeypatch):
    db = sync_env
    monkeypatch.setenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", connection_json(service.port, token="wrong"))
    add_events(db, "acme.com", spread(HOUR, 1))
    service.script("acme.com", *[Reply(401, {"error": "bad token"})] * 4)

    dr = run_sync(run_dag)

    assert dr.state == "failed"
    assert task_states(dr)["resolve_sites"] == "failed"
    (ti,) = [t for t in dr.get_task_instances() if t.task_id == "resolve_sites"]
    assert ti.try_number == 1  # a credentials error is a setting error: not retried
    assert service.asked("acme.com") == 1
    run = last_run(db)
    assert run["status"] == "aborted"
    assert "connection 'pixel_management'" in run["error"] and "refused the credentials" in run["error"]
    assert mapping(db) == {}


def test_exported_buckets_hold_nothing_else(sync_env, service, run_dag, s3):
    """Only the clients' own folders exist after a sync and an export (tenant isolation kept)."""
    db = sync_env
    add_events(db, "shop.acme.com", spread(HOUR, 2), seed=1)
    add_events(db, "globex.de", spread(HOUR, 2), seed=2)
    run_sync(run_dag)
    run_hour(run_dag, HOUR)
    assert {k.split("/dt=")[0] for k in list_keys(s3, "client-acme")} == {"exports/acme"}
    assert {k.split("/dt=")[0] for k in list_keys(s3, "client-globex")} == {"globex"}


def test_a_site_an_operator_just_mapped_is_not_asked_but_reattributed(sync_env, service, run_dag):
    db = sync_env
    add_events(db, "www.initech.example", spread(HOUR, 3))
    db.execute("INSERT INTO client_domains (domain, client_id) VALUES ('initech.example', 'acme')")

    dr = run_sync(run_dag)

    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert service.requests == []
    assert clients_of(db, "www.initech.example") == {"acme": 3}
    assert mapping(db) == {"initech.example": ("acme", "manual")}
