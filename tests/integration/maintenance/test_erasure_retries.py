"""Erasure never silently gives up: S3 fails twice (a refused connection), the request waits, then succeeds.

S3 is reached through a local TCP proxy in front of the test's S3 server that refuses
connections while told to (a real network failure: the client's connection is reset),
so the failing S3 step is the pipeline's own code against a real endpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import struct
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devtools import devstack
from tests.conftest import BACKUP_BUCKET, task_states

from .conftest import add_client, count, event, insert_events


class RefusingProxy:
    """A TCP proxy to ``target`` that resets every connection while :attr:`refusing` is set.

    :param target: ``(host, port)`` of the real server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.refusing = False
        self.refused = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        """The proxy's URL."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.refusing:
                self.refused += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST: the client's request fails with a reset connection
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting."""
        self._closed = True
        self.server.close()


@pytest.fixture
def proxy(s3_server, monkeypatch):
    """aws_default goes through a RefusingProxy (botocore's own retries off: each run tries once)."""
    target = urlparse(s3_server.endpoint_url)
    p = RefusingProxy((target.hostname, target.port))
    conn = json.loads(devstack.aws_connection_json(p.endpoint))
    conn["extra"]["config_kwargs"] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    yield p
    p.close()


def _seed(db, s3):
    add_client(db, "acme", domains=["acme.com"])
    h1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    insert_events(db, [event(h1 + timedelta(minutes=1), visitor_id="bob", status="exported")])
    insert_events(db, [event(h1 + timedelta(minutes=2), visitor_id="amy", status="exported")])
    folder = f"acme/dt={h1:%Y-%m-%d}/hour={h1:%H}"
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"visitor_id": "bob"}, {"visitor_id": "amy"}]), buf)
    s3.put_object(Bucket=BACKUP_BUCKET, Key=f"{folder}/part-00000.parquet", Body=buf.getvalue())
    return folder


def _request(db):
    return db.execute(
        "SELECT request_id, status, attempts, failures, last_attempt_at, next_attempt_at, error "
        "FROM gdpr_erasure_requests"
    ).fetchone()


def test_an_s3_failure_is_retried_across_runs_with_a_growing_delay(
    maint_db, partitions_back, s3, proxy, run_dag, caplog
):
    db = maint_db
    folder = _seed(db, s3)
    rid = db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id, requested_by) "
        "VALUES ('acme', 'bob', 'bob himself') RETURNING request_id"
    ).fetchone()[0]
    caplog.set_level(logging.ERROR)

    # Run 1: S3 refuses. The run fails (on its first try: the request's own schedule retries it,
    # not Airflow), naming the client, the request and the object; the request waits 30 minutes.
    proxy.refusing = True
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "failed"
    assert {ti.task_id: ti.try_number for ti in dr.get_task_instances() if ti.state == "failed"} == {
        "process_erasure_requests": 1
    }
    assert proxy.refused >= 1
    _, status, attempts, failures, last, nxt, error = _request(db)
    assert (status, attempts, failures) == ("pending", 1, 1)
    assert timedelta(minutes=29) < nxt - last < timedelta(minutes=31)
    assert f"s3://{BACKUP_BUCKET}/{folder}/" in error
    oncall = [r.getMessage() for r in caplog.records if "FAILED dag=events_gdpr_erasure" in r.getMessage()]
    assert oncall and f"request {rid} retried from" in oncall[-1] and "client acme" in oncall[-1]
    assert count(db, "visitor_id = 'bob'") == 0  # the database step is done; the backup step is not

    # Run 2, right after: the request is not due yet; nothing is tried, the run succeeds.
    refused = proxy.refused
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "success", task_states(dr)
    assert _request(db)[1:4] == ("pending", 1, 1)

    # Run 3, once due (the clock moved on): S3 still refuses; the delay doubles.
    db.execute("UPDATE gdpr_erasure_requests SET next_attempt_at = now() - interval '1 second'")
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "failed"
    assert proxy.refused > refused
    _, status, attempts, failures, last, nxt, _ = _request(db)
    assert (status, attempts, failures) == ("pending", 2, 2)
    assert timedelta(minutes=59) < nxt - last < timedelta(minutes=61)

    # Run 4, due again, S3 answers: done; bob is gone from the backup.
    proxy.refusing = False
    db.execute("UPDATE gdpr_erasure_requests SET next_attempt_at = now() - interval '1 second'")
    dr = run_dag("events_gdpr_erasure", logical_date=datetime.now(UTC))
    assert dr.state == "success", task_states(dr)
    _, status, attempts, failures, _, nxt, error = _request(db)
    assert (status, attempts, failures, nxt, error) == ("done", 3, 2, None, None)
    body = s3.get_object(Bucket=BACKUP_BUCKET, Key=f"{folder}/part-00000.parquet")["Body"].read()
    assert pq.read_table(io.BytesIO(body)).column("visitor_id").to_pylist() == ["amy"]


def test_a_request_that_keeps_failing_becomes_failed_and_an_unknown_client_fails_at_once(
    maint_db, partitions_back, s3, proxy
):
    """max_failures transient failures -> failed; a client missing from clients -> failed on the first."""
    from events_pipeline.common.s3 import s3_client
    from events_pipeline.erasure.requests import ErasureRunError, LandingLayout, RetryPolicy, run_erasure

    db = maint_db
    _seed(db, s3)
    db.execute(
        "INSERT INTO gdpr_erasure_requests (client_id, visitor_id) VALUES ('acme', 'bob'), ('acmee', 'x')"
    )
    proxy.refusing = True
    policy = RetryPolicy(base_minutes=1, max_minutes=2, max_failures=2)
    for expected in ("pending", "failed"):
        with pytest.raises(ErasureRunError):
            run_erasure(db, s3_client(), BACKUP_BUCKET, LandingLayout(bucket="test-landing"), policy=policy)
        states = dict(db.execute("SELECT client_id, status FROM gdpr_erasure_requests"))
        assert states == {"acme": expected, "acmee": "failed"}
        db.execute("UPDATE gdpr_erasure_requests SET next_attempt_at = now() - interval '1 second'")
    errors = dict(db.execute("SELECT client_id, error FROM gdpr_erasure_requests"))
    assert "client_id 'acmee' is not in clients" in errors["acmee"]
    # a failed request is never taken again by a run; the health check reports it
    run_erasure(db, s3_client(), BACKUP_BUCKET, LandingLayout(bucket="test-landing"), policy=policy)
    assert db.execute("SELECT sum(attempts) FROM gdpr_erasure_requests").fetchone()[0] == 3
