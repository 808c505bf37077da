"""The local stack's pixel management service (devtools) and what scripts/run_local.py does with it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools import pixel_management_server as demo
from devtools.demo_data import DEMO_CLIENTS, DEMO_HOSTS, iter_events, ndjson_bytes
from tests.conftest import LANDING_BUCKET, task_states

from .conftest import clients_of, mapping, now_utc

DEMO_TOKEN = "demo-token"


@pytest.fixture
def demo_service() -> Iterator[demo.PixelManagementServer]:
    """The demo service on a free loopback port, with a token."""
    server = demo.start(0, token=DEMO_TOKEN)
    yield server
    server.stop()


def _get(server: demo.PixelManagementServer, site: str, token: str | None = DEMO_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}{demo.DOMAIN_PATH}{site}", headers=headers, timeout=5)


def test_demo_service_answers_the_demo_domains_and_404_for_the_unknown_one(demo_service):
    expected = {
        "www.acme.com": "acme",
        "shop.acme.com": "acme",
        "globex.de": "globex",
        "blog.globex-shop.eu": "globex",
        "app.initech.io": "initech",
    }
    for host in DEMO_HOSTS:
        response = _get(demo_service, host)
        if host in expected:
            assert response.status_code == 200, host
            assert response.json() == {"client_id": expected[host], "domain": host}
        else:
            assert host == "unknown.example.org"
            assert response.status_code == 404
    assert _get(demo_service, "notacme.com").status_code == 404  # label boundaries
    assert _get(demo_service, "www.acme.com", token=None).status_code == 401
    assert json.loads(demo_service.connection_json()) == {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": demo_service.port,
        "schema": "http",
        "password": DEMO_TOKEN,
    }


def test_run_local_starts_the_service_unless_a_connection_is_given(monkeypatch):
    run_local = importlib.import_module("scripts.run_local")
    monkeypatch.delenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", raising=False)
    stack: list[Any] = []
    conn = run_local._pixel_management(stack)
    try:
        assert conn is not None and len(stack) == 1
        port = json.loads(conn)["port"]
        assert httpx.get(f"http://127.0.0.1:{port}{demo.DOMAIN_PATH}globex.de", timeout=5).status_code == 200
    finally:
        for thing in stack:
            thing.stop()
    monkeypatch.setenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", '{"conn_type": "http", "host": "elsewhere"}')
    assert run_local._pixel_management([]) is None


def test_demo_site_left_to_the_service_becomes_attributed_without_sql(
    services, clean_tables, s3, db, run_dag, demo_service, monkeypatch
):
    """What `make run` shows: initech.io is not seeded, the sync maps it, its events get their client."""
    db.execute("TRUNCATE attribution_sync_runs, attribution_sync_problems, attribution_negative_cache")
    run_local = importlib.import_module("scripts.run_local")
    run_local._seed_clients(db, demo.SERVICE_ONLY_DOMAINS)
    assert "initech.io" not in mapping(db)
    for client in DEMO_CLIENTS:
        s3.create_bucket(Bucket=f"{client.client_id}-analytics")
    s3.put_object(Bucket=LANDING_BUCKET, Key="incoming/demo/a.ndjson.gz", Body=ndjson_bytes(iter_events(300)))
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    waiting = clients_of(db, "app.initech.io")
    assert set(waiting) == {None} and waiting[None] > 0

    monkeypatch.setenv("AIRFLOW_CONN_PIXEL_MANAGEMENT", demo_service.connection_json())
    dr = run_dag("events_attribution_sync", logical_date=now_utc())

    assert task_states(dr) == {"resolve_sites": "success", "reattribute_waiting_rows": "success"}
    assert mapping(db)["app.initech.io"] == ("initech", "pixel_management")
    assert clients_of(db, "app.initech.io") == {"initech": waiting[None]}
    assert set(clients_of(db, "unknown.example.org")) == {None}
    assert db.execute("SELECT site FROM attribution_negative_cache").fetchall() == [("unknown.example.org",)]
    db.execute("TRUNCATE attribution_sync_runs, attribution_sync_problems, attribution_negative_cache")
