"""Where exports may go: never the landing bucket, put-only client buckets, no adopted objects.

- the landing bucket (Variable ``events_landing_bucket``) is refused as a client's bucket
  and as the backup bucket, naming the client and the setting; the client-check DAG
  calls the same rules (``client_hour.check_destination``);
- a client bucket whose credentials allow PutObject alone (no List/Get/Head/Delete) is
  exported to. moto does not evaluate bucket policies; the closest it supports is an
  IAM policy on the client's credentials, enforced by a separate moto server with
  authentication on: the client's key may only ``s3:PutObject`` into its bucket;
- a new client's prefix never holds another client's earlier objects (an outer prefix
  over a client that already exported, a prefix another client exported to and left).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools import devstack
from events_pipeline.common.settings import MIGRATIONS_DIR
from events_pipeline.export.client_hour import PermanentExportError, check_destination
from tests.conftest import task_states
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    read_hour,
    run_hour,
    spread,
    states_by_client,
)

H0, H1 = HOUR, HOUR + timedelta(hours=1)


def _error(db, client_id: str) -> str:
    return db.execute("SELECT error FROM export_runs WHERE client_id = %s", (client_id,)).fetchone()[0]


# --- the landing bucket ---------------------------------------------------------------


def test_the_landing_bucket_is_never_a_clients_bucket(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    add_client(db, "leaky", "test-landing", "exports/leaky")
    for seed, cid in enumerate(("acme", "leaky")):
        insert_rows(db, make_rows(cid, spread(H0, 4), seed=seed))
    dr = run_hour(run_dag, H0)
    assert states_by_client(dr) == {"acme": "success", "leaky": "failed"}, task_states(dr)
    tries = {ti.rendered_map_index: ti.try_number for ti in dr.get_task_instances() if ti.map_index >= 0}
    assert tries["g02: leaky"] == 1  # refused at once, no retries
    error = _error(db, "leaky")
    assert "client 'leaky'" in error and "landing bucket" in error and "events_landing_bucket" in error
    assert list_keys(s3, "test-landing") == []
    unmarked = "SELECT count(*) FROM events_log WHERE client_id = 'leaky' AND export_hour IS NULL"
    assert db.execute(unmarked).fetchone()[0] == 4
    # the client-check DAG's function applies the same rules
    assert "accepted" in check_destination("acme")
    with pytest.raises(PermanentExportError, match=r"client 'leaky'.*events_landing_bucket"):
        check_destination("leaky")


def test_the_landing_bucket_is_never_the_backup_bucket(export_env, db, run_dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_BACKUP_BUCKET", "test-landing")
    add_client(db, "acme", "client-acme", "acme")
    insert_rows(db, make_rows("acme", spread(H0, 4), seed=1))
    dr = run_hour(run_dag, H0)
    assert states_by_client(dr) == {"acme": "failed"}
    error = _error(db, "acme")
    assert "client 'acme'" in error and "events_backup_bucket" in error and "events_landing_bucket" in error
    assert list_keys(export_env, "test-landing") == [] and list_keys(export_env, "client-acme") == []
    with pytest.raises(PermanentExportError, match="events_backup_bucket"):
        check_destination("acme")


# --- a put-only client bucket -------------------------------------------------------------


def _allow(actions: list[str], resource: str) -> str:
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
    )


@pytest.fixture
def put_only_bucket(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A moto server with IAM authentication on, holding bucket ``client-putonly``.

    The first 7 requests (the set-up below) run without authentication; from then on
    every request is checked against its caller's IAM policies: ``writer`` may only
    ``s3:PutObject`` into ``client-putonly``, ``auditor`` (the test's reader) anything.
    """
    port = devstack.free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "7"}
    server = Path(sys.executable).with_name("moto_server")
    log = (tmp_path / "moto.log").open("w")
    command = [str(server), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)  # noqa: S310 - local test server
                break
            except OSError:  # not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        kwargs = {"endpoint_url": endpoint, "region_name": devstack.LOCAL_REGION}
        admin = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", **kwargs}
        boto3.client("s3", **admin).create_bucket(Bucket="client-putonly")  # 1
        iam = boto3.client("iam", **admin)
        keys = {}
        for user, policy in (
            ("writer", _allow(["s3:PutObject"], "arn:aws:s3:::client-putonly/*")),
            ("auditor", _allow(["s3:*"], "*")),
        ):
            iam.create_user(UserName=user)  # 2, 5
            iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=policy)  # 3, 6
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]  # 4, 7
        auditor = boto3.client(
            "s3",
            aws_access_key_id=keys["auditor"]["AccessKeyId"],
            aws_secret_access_key=keys["auditor"]["SecretAccessKey"],
            **kwargs,
        )
        conn = {
            "conn_type": "aws",
            "login": keys["writer"]["AccessKeyId"],
            "password": keys["writer"]["SecretAccessKey"],
            "extra": {"endpoint_url": endpoint, "region_name": devstack.LOCAL_REGION},
        }
        yield {"endpoint": endpoint, "connection": json.dumps(conn), "auditor": auditor, "keys": keys}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_a_put_only_client_bucket_is_exported_to(export_env, db, run_dag, put_only_bucket, monkeypatch):
    import botocore.exceptions

    monkeypatch.setenv("AIRFLOW_CONN_PUTONLY_AWS", put_only_bucket["connection"])
    auditor = put_only_bucket["auditor"]
    writer = boto3.client(
        "s3",
        endpoint_url=put_only_bucket["endpoint"],
        region_name=devstack.LOCAL_REGION,
        aws_access_key_id=put_only_bucket["keys"]["writer"]["AccessKeyId"],
        aws_secret_access_key=put_only_bucket["keys"]["writer"]["SecretAccessKey"],
    )
    for call in (
        lambda: writer.head_bucket(Bucket="client-putonly"),
        lambda: writer.list_objects_v2(Bucket="client-putonly"),
    ):  # the credentials really are put-only
        with pytest.raises(botocore.exceptions.ClientError):
            call()

    add_client(db, "remote", "client-putonly", "drop/events", conn_id="putonly_aws")
    insert_rows(db, make_rows("remote", spread(H0, 9), seed=1))
    dr = run_hour(run_dag, H0)
    assert dr.state == "success", task_states(dr)
    manifest, table = read_hour(auditor, "client-putonly", folder("drop/events", H0))
    assert manifest["row_count"] == 9 == table.num_rows
    _, backup = read_hour(export_env, "test-backup", folder("remote", H0))
    assert backup.equals(table)

    # a re-run of the published hour with smaller parts rewrites it; the stale part the
    # client bucket does not let us delete is not listed by the manifest (the backup drops it)
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_PART_MAX_ROWS", "1000")
    insert_rows(db, make_rows("remote", spread(H1, 1500), seed=2))
    assert run_hour(run_dag, H1).state == "success"
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_PART_MAX_ROWS", "2000")
    assert run_hour(run_dag, H1).state == "success"
    manifest, table = read_hour(auditor, "client-putonly", folder("drop/events", H1))
    assert [f["key"] for f in manifest["files"]] == ["part-00000.parquet"] and table.num_rows == 1500
    assert list_keys(export_env, "test-backup", folder("remote", H1)) == [
        f"{folder('remote', H1)}/{name}" for name in ("_manifest.json", "part-00000.parquet")
    ]


# --- no adopted objects -----------------------------------------------------------------------


def test_an_outer_prefix_cannot_adopt_a_clients_earlier_objects(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "exports/acme")
    insert_rows(db, make_rows("acme", spread(H0, 3), seed=1))
    assert run_hour(run_dag, H0).state == "success"  # acme's objects are in exports/acme/...

    # a new client whose prefix is the folder above acme's: its space would hold acme's files
    add_client(db, "newco", "client-acme", "exports")
    insert_rows(db, make_rows("newco", spread(H1, 3), seed=2))
    insert_rows(db, make_rows("acme", spread(H1, 2), seed=3))
    dr = run_hour(run_dag, H1)
    assert states_by_client(dr) == {"acme": "success", "newco": "failed"}, task_states(dr)
    error = db.execute("SELECT error FROM export_runs WHERE client_id = 'newco'").fetchone()[0]
    assert "would hold client 'acme'" in error and "s3://client-acme/exports/acme/" in error
    assert all(k.startswith("exports/acme/") for k in list_keys(s3, "client-acme"))


def test_an_outer_client_that_exported_first_keeps_exporting(export_env, db, run_dag):
    add_client(db, "outer", "client-acme", "exports")
    insert_rows(db, make_rows("outer", spread(H0, 3), seed=1))
    assert run_hour(run_dag, H0).state == "success"
    add_client(db, "nested", "client-acme", "exports/nested")  # configured later, inside outer's space
    insert_rows(db, make_rows("outer", spread(H1, 2), seed=2))
    insert_rows(db, make_rows("nested", spread(H1, 2), seed=3))
    dr = run_hour(run_dag, H1)
    assert states_by_client(dr) == {"outer": "success", "nested": "failed"}
    assert "lies inside client 'outer'" in _error(db, "nested")


def test_a_prefix_another_client_left_is_not_given_to_a_new_client(export_env, db, run_dag):
    add_client(db, "acme", "client-acme", "exports/acme")
    insert_rows(db, make_rows("acme", spread(H0, 3), seed=1))
    assert run_hour(run_dag, H0).state == "success"
    db.execute("UPDATE clients SET export_prefix = 'exports/acme-v2' WHERE client_id = 'acme'")  # acme moves
    add_client(db, "newco", "client-acme", "exports/acme")  # and a new client is given its old prefix
    insert_rows(db, make_rows("newco", spread(H1, 3), seed=2))
    dr = run_hour(run_dag, H1)
    assert states_by_client(dr) == {"acme": "success", "newco": "failed"}
    error = db.execute("SELECT error FROM export_runs WHERE client_id = 'newco'").fetchone()[0]
    assert "lies inside client 'acme''s earlier s3://client-acme/exports/acme/" in error
    # nothing of newco was written next to acme's earlier hour
    assert list_keys(export_env, "client-acme", "exports/acme/") == [
        f"{folder('exports/acme', H0)}/{n}" for n in ("_manifest.json", "part-00000.parquet")
    ]


def test_the_migration_remembers_the_spaces_of_earlier_exports(db, clean_tables):
    db.execute(
        "INSERT INTO export_runs (client_id, interval_start, interval_end, status, manifest_key, started_at) "
        "VALUES ('gone', %s, %s, 'succeeded', %s, %s)",
        (H0, H1, f"s3://client-acme/exports/gone/{folder('', H0).lstrip('/')}/_manifest.json", H0),
    )
    sql = (MIGRATIONS_DIR / "0070_export_safety.sql").read_text()
    backfill = sql[sql.index("INSERT INTO export_spaces") :]
    db.execute(backfill)
    assert db.execute("SELECT client_id, bucket, prefix FROM export_spaces").fetchall() == [
        ("gone", "client-acme", "exports/gone")
    ]
    db.execute("TRUNCATE export_spaces")
