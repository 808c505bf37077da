"""One slow tenant never delays the others.

A client whose S3 endpoint accepts TCP connections and never answers (a real local
socket server) is bounded by the export's S3 timeouts and isolated in its group; a
client whose earlier hour is stuck (its export lock held) fails fast instead of
holding the group; each client's hours keep their own rows when hours run at once.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from devtools import devstack
from events_pipeline.common.db import advisory_lock
from events_pipeline.export.client_hour import client_lock_name, export_client_hour
from tests.conftest import task_states
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    make_rows,
    read_hour,
    run_hour,
    spread,
    states_by_client,
)

H0, H1 = HOUR, HOUR + timedelta(hours=1)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An S3 'endpoint' that accepts every connection and never sends a byte back."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)  # kept open, never answered

    thread = threading.Thread(target=accept, name="silent-endpoint", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def short_s3_limits(monkeypatch):
    """Tight S3 limits so the test does not wait out the production defaults."""
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_S3_CONNECT_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_S3_READ_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_CLIENT_LOCK_WAIT_SECONDS", "1")
    return monkeypatch


def test_a_client_whose_endpoint_never_answers_does_not_hold_its_group(
    export_env, db, run_dag, silent_endpoint, short_s3_limits
):
    s3 = export_env
    short_s3_limits.setenv("AIRFLOW_CONN_SILENT_AWS", devstack.aws_connection_json(silent_endpoint))
    short_s3_limits.setenv("AIRFLOW_VAR_EVENTS_EXPORT_MAX_GROUPS", "1")  # all three in ONE group
    add_client(db, "acme", "client-acme", "acme")
    add_client(db, "globex", "client-globex", "globex")
    add_client(db, "hangs", "client-hangs", "hangs", conn_id="silent_aws")
    for seed, cid in enumerate(("acme", "globex", "hangs")):
        insert_rows(db, make_rows(cid, spread(H0, 6), seed=seed))

    dr = run_hour(run_dag, H0)

    assert dr.state == "failed"
    assert states_by_client(dr) == {"acme": "failed", "globex": "failed", "hangs": "failed"}  # one group
    # the others of the group are published; the silent client is named, with its bucket
    assert read_hour(s3, "client-acme", folder("acme", H0))[0]["row_count"] == 6
    assert read_hour(s3, "client-globex", folder("globex", H0))[0]["row_count"] == 6
    runs = {r[0]: r[1:] for r in db.execute("SELECT client_id, status, attempts, error FROM export_runs")}
    assert runs["acme"][:2] == ("succeeded", 1) and runs["globex"][:2] == ("succeeded", 1)
    status, _attempts, error = runs["hangs"]
    assert status == "failed" and "client-hangs" in error and "silent_aws" in error
    assert "timeout" in error.lower()
    # the group's 4 tries re-exported the failed client only (acme, globex: 1 attempt each)
    assert [ti.try_number for ti in dr.get_task_instances() if ti.task_id == "export_group"] == [4]
    unmarked = "SELECT count(*) FROM events_log WHERE client_id = 'hangs' AND export_hour IS NULL"
    assert db.execute(unmarked).fetchone()[0] == 6  # nothing marked: its rows go to its next hour


def test_a_stuck_earlier_hour_of_one_client_fails_it_fast_and_the_others_export(
    export_env, db, run_dag, migrated_db, short_s3_limits
):
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    add_client(db, "stuck", "client-globex", "stuck")
    for seed, cid in enumerate(("acme", "stuck")):
        insert_rows(db, make_rows(cid, spread(H1, 5), seed=seed))
    # H0's export of 'stuck' hangs in another run: it holds the client's export lock
    with (
        psycopg.connect(migrated_db.dsn("events"), autocommit=True) as other,
        advisory_lock(other, client_lock_name("stuck")),
    ):
        dr = run_hour(run_dag, H1)
    assert states_by_client(dr) == {"acme": "success", "stuck": "failed"}, task_states(dr)
    assert read_hour(s3, "client-acme", folder("acme", H1))[0]["row_count"] == 5
    error = db.execute("SELECT error FROM export_runs WHERE client_id = 'stuck'").fetchone()[0]
    assert "still holds its lock after 1 s" in error and "client=stuck" in error
    assert run_hour(run_dag, H1).state == "success"  # once H0 let go, the hour exports


def test_hours_running_at_once_keep_each_clients_rows_in_their_own_hour(export_env, db):
    """Hour H1 of a client exported before H0 (runs at once): each folder holds its own hour's rows."""
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    earlier = HOUR - timedelta(hours=1)
    insert_rows(db, make_rows("acme", spread(earlier, 3), seed=1))
    assert export_client_hour("acme", earlier, HOUR)["rows"] == 3  # the client's history so far

    insert_rows(db, make_rows("acme", spread(H0, 4), seed=2))
    insert_rows(db, make_rows("acme", spread(H1, 5), seed=3))
    first = export_client_hour("acme", H1, H1 + timedelta(hours=1))  # H0's run has not reached acme yet
    assert (first["claim_mode"], first["rows"]) == ("within", 5)
    second = export_client_hour("acme", H0, H1)
    assert (second["claim_mode"], second["rows"]) == ("within", 4)
    for start, rows in ((H0, 4), (H1, 5)):
        _, table = read_hour(s3, "client-acme", folder("acme", start))
        created = table.column("created_at").to_pylist()
        assert len(created) == rows and all(start <= c < start + timedelta(hours=1) for c in created)
    # the next hour, with no earlier hour missing, takes older stragglers again
    insert_rows(db, make_rows("acme", [H0 + timedelta(minutes=59)], seed=9, batch_id="late"))
    nxt = export_client_hour("acme", H1 + timedelta(hours=1), H1 + timedelta(hours=2))
    assert (nxt["claim_mode"], nxt["rows"]) == ("through", 1)
