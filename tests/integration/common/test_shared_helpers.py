"""The shared helpers of ``events_pipeline.common`` against the real PostgreSQL and S3 server.

``compat`` leans on private or undocumented library behaviour; these tests fail,
naming the library, when an upgrade changes it.
"""

from __future__ import annotations

import threading
from queue import Queue

import psycopg
import pytest

from events_pipeline.common import compat
from events_pipeline.common.db import advisory_lock, as_dict, as_dicts
from events_pipeline.common.s3 import NO_SUCH_BUCKET, NO_SUCH_KEY, error_code
from events_pipeline.privacy.visitor_digest import visitor_digest


def test_psycopg_queued_writer_still_has_the_private_queue_we_bound(db):
    with db.cursor() as cur:
        writer = compat.bounded_copy_writer(cur, max_buffers=3)
        assert isinstance(writer._queue, Queue), "psycopg changed QueuedLibpqWriter: update compat"
        assert writer._queue.maxsize == 3


def test_bounded_writer_copies_rows_end_to_end(db):
    db.execute("CREATE TEMP TABLE compat_copy (n int)")
    with db.cursor() as cur:
        with cur.copy("COPY compat_copy (n) FROM STDIN", writer=compat.bounded_copy_writer(cur, 2)) as copy:
            for n in range(5_000):
                copy.write(f"{n}\n".encode())
        assert cur.execute("SELECT count(*), sum(n) FROM compat_copy").fetchone() == (
            5_000,
            sum(range(5_000)),
        )


def test_postgres_copy_error_context_still_names_the_line(db):
    db.execute("CREATE TEMP TABLE compat_lines (n int)")
    with (
        pytest.raises(psycopg.errors.DataError) as info,
        db.cursor().copy("COPY compat_lines FROM STDIN") as copy,
    ):
        copy.write(b"1\n2\nnot-a-number\n4\n")
    assert compat.copy_error_line(info.value) == 3, (
        f"PostgreSQL's COPY context changed: {info.value.diag.context!r}"
    )


def test_copy_error_line_without_context_is_none():
    assert compat.copy_error_line(ValueError("no context")) is None


def test_advisory_lock_excludes_a_second_session_and_is_released(migrated_db, db):
    with psycopg.connect(migrated_db.dsn("events"), autocommit=True) as other:
        with advisory_lock(db, "tests.helpers.lock") as held:
            assert held is True
            with advisory_lock(other, "tests.helpers.lock", wait=False) as second:
                assert second is False
        with advisory_lock(other, "tests.helpers.lock", wait=False) as again:
            assert again is True


def test_advisory_lock_waits_for_the_holder(migrated_db, db):
    order: list[str] = []
    with advisory_lock(db, "tests.helpers.wait"):

        def waiter() -> None:
            with (
                psycopg.connect(migrated_db.dsn("events"), autocommit=True) as other,
                advisory_lock(other, "tests.helpers.wait"),
            ):
                order.append("waiter")

        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(timeout=0.5)
        order.append("holder done")
    thread.join(timeout=10)
    assert order == ["holder done", "waiter"]


def test_rows_as_dicts(db):
    cur = db.execute("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY 1")
    assert as_dict(cur) == {"a": 1, "b": "x"}
    assert as_dicts(cur) == [{"a": 2, "b": "y"}]
    assert as_dict(cur) is None


def test_s3_error_codes_from_the_real_server(s3):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as missing_key:
        s3.get_object(Bucket="test-landing", Key="no/such/key")
    assert error_code(missing_key.value) in NO_SUCH_KEY
    with pytest.raises(ClientError) as head_missing:
        s3.head_object(Bucket="test-landing", Key="no/such/key")
    assert error_code(head_missing.value) in NO_SUCH_KEY
    with pytest.raises(ClientError) as missing_bucket:
        s3.head_bucket(Bucket="no-such-bucket-here")
    assert error_code(missing_bucket.value) in NO_SUCH_BUCKET
    assert error_code(RuntimeError("not an S3 error")) == ""


def test_python_and_sql_spell_the_same_visitor_digest(db):
    sql = "SELECT sha256(convert_to(%s || chr(31) || %s, 'UTF8'))"
    in_sql = db.execute(sql, ("acme", "jürgen")).fetchone()[0]
    assert bytes(in_sql) == visitor_digest("acme", "jürgen")
