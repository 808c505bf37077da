"""events_client_check through dag.test(run_conf=...): real PostgreSQL, the moto S3 server.

Put-only bucket: moto 5.2 does not evaluate S3 bucket policies when it authorizes a
request; with its IAM authorization switched on (``/moto-api/reset-auth``) it evaluates
the caller's IAM identity policies. The closest it supports to "a bucket policy that
allows this client's credentials PutObject and nothing else" is therefore an IAM user
whose only permission is ``s3:PutObject`` on the bucket's objects, used by the client's
own connection: to the bucket it is the same thing (the put passes; HeadBucket,
ListBucket, GetObject and DeleteObject are refused).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from events_pipeline.common.intervals import floor_hour
from tests.integration.export.conftest import add_client, insert_rows, list_keys, make_rows

LOGGER = "events_pipeline.export.client_check"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def findings(caplog: Any) -> dict[str, tuple[str, str]]:
    """Map each check to ``(status, message)`` from the task's log lines (one line per finding)."""
    out = {}
    for record in caplog.records:
        m = re.match(r"client_check client=\S+ check=(\w+) status=(\w+): (.*)$", record.getMessage())
        if m and record.name == LOGGER:
            assert m[1] not in out, f"check {m[1]} logged twice"
            out[m[1]] = (m[2], m[3])
    return out


def check_task(dr: Any) -> Any:
    """The one task instance of a client-check run."""
    (ti,) = dr.get_task_instances()
    return ti


def error_lines(caplog: Any) -> str:
    """Every ERROR record's message, one per line."""
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def expected_next_keys(bucket: str, prefix: str, client_id: str, ext: str, parts: int) -> list[set[str]]:
    """The keys the check must name for the current hour (and the next, should the hour turn meanwhile)."""
    out = []
    for hour in (floor_hour(datetime.now(UTC)), floor_hour(datetime.now(UTC)) + timedelta(hours=1)):
        path = f"dt={hour:%Y-%m-%d}/hour={hour:%H}"
        names = [f"part-{n:05d}{ext}" for n in range(parts)] + ["_manifest.json"]
        out.append(
            {f"s3://{bucket}/{prefix}/{path}/{n}" for n in names}
            | {f"s3://test-backup/{client_id}/{path}/{n}" for n in names}
        )
    return out


def test_a_healthy_client_passes_every_check_and_leaves_nothing_behind(export_env, db, run_dag, caplog):
    s3 = export_env
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_client(db, "acme", "client-acme", "exports/acme")
    add_client(db, "globex", "client-acme", "exports/globex")  # same bucket, disjoint prefix
    db.execute(
        "UPDATE clients SET export_format = 'jsonl', export_compression = 'gzip', export_sse = 'aws:kms', "
        "export_sse_kms_key_id = %s, export_part_max_rows = 1000 WHERE client_id = 'acme'",
        (KEY_ARN,),
    )
    db.execute(
        "INSERT INTO client_domains (domain, client_id) VALUES ('acme.com', 'acme'), ('acme.org', 'acme')"
    )
    now = datetime.now(UTC)
    rows = make_rows("acme", [now - timedelta(minutes=m) for m in range(1, 1202)], seed=3)
    for r in rows:
        r["site_id"] = "shop.acme.com"
    unattributed = make_rows(None, [now - timedelta(minutes=5)], seed=4)
    unattributed[0]["site_id"] = "acme.com"
    insert_rows(db, rows + unattributed)

    dr = run_dag("events_client_check", run_conf={"client_id": "acme"})

    assert dr.state == "success", error_lines(caplog)
    got = findings(caplog)
    assert list(got) == [
        "client",
        "options",
        "isolation",
        "landing_bucket",
        "domains",
        "connection",
        "test_object",
        "delete_test_object",
        "export_permissions",
        "next_export",
    ]
    statuses = {check: status for check, (status, _) in got.items()}
    assert statuses == {
        "client": "ok",
        "options": "ok",
        "isolation": "ok",
        "landing_bucket": "ok",
        "domains": "warn",  # acme.org has no events
        "connection": "ok",
        "test_object": "ok",
        "delete_test_object": "ok",
        "export_permissions": "ok",
        "next_export": "info",
    }
    assert "never exported yet" in got["client"][1]
    assert "format=jsonl compression=gzip files=part-NNNNN.jsonl.gz" in got["options"][1]
    assert f"aws:kms key {KEY_ARN}" in got["options"][1] and "1000 rows" in got["options"][1]
    assert "bucket shared with globex" in got["isolation"][1]
    assert "'test-landing'" in got["landing_bucket"][1]
    assert "acme.com: 1201 attributed + 1 unattributed" in got["domains"][1]
    assert "acme.org: none" in got["domains"][1]
    assert "connection 'aws_default' resolves" in got["connection"][1]
    assert f"SSE requested aws:kms, applied aws:kms with key {KEY_ARN}" in got["test_object"][1]
    put_key = re.search(r"PutObject s3://client-acme/(\S+) allowed", got["test_object"][1])[1]
    assert put_key.startswith("exports/acme/_events_client_check/") and put_key.endswith(".json")
    # the next export: 1202 pending rows -> two parts of at most 1000 rows + the manifest, in both buckets
    named = set(re.findall(r"s3://\S+?(?=[,;]|\s|$)", got["next_export"][1]))
    assert any(
        named == keys for keys in expected_next_keys("client-acme", "exports/acme", "acme", ".jsonl.gz", 2)
    )
    assert "1201 pending row(s)" in got["next_export"][1]
    # nothing left behind, nothing changed
    assert list_keys(s3, "client-acme") == []
    assert list_keys(s3, "test-backup") == []
    assert db.execute("SELECT count(*) FROM export_runs").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM events_log WHERE export_status <> 'pending'").fetchone()[0] == 0


@pytest.fixture
def put_only(export_env, s3_server, monkeypatch) -> Iterator[dict[str, str]]:
    """A bucket ``client-putonly`` whose connection ``putonly_aws`` may only PutObject (moto IAM auth on).

    Yields boto3 client arguments: ``admin`` (every right) and ``putter`` (the client's keys).
    """
    endpoint = s3_server.endpoint_url
    setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    export_env.create_bucket(Bucket="client-putonly")
    iam = boto3.client("iam", **setup)
    suffix = uuid.uuid4().hex[:8]

    def user(name: str, statement: dict[str, Any]) -> tuple[str, str]:
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    admin = user(f"admin-{suffix}", {"Effect": "Allow", "Action": "*", "Resource": "*"})
    putter = user(
        f"putonly-{suffix}",
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::client-putonly/*"},
    )
    for conn_id, (key_id, secret) in (("aws_default", admin), ("putonly_aws", putter)):
        conn = {"conn_type": "aws", "login": key_id, "password": secret, "extra": setup}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    try:
        yield {
            "admin": {"aws_access_key_id": admin[0], "aws_secret_access_key": admin[1], **setup},
            "putter": {"aws_access_key_id": putter[0], "aws_secret_access_key": putter[1], **setup},
        }
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


def test_a_put_only_bucket_passes_with_the_export_encryption(put_only, db, run_dag, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_client(db, "acme", "client-putonly", "acme/events", conn_id="putonly_aws")
    db.execute("UPDATE clients SET export_sse = 'AES256' WHERE client_id = 'acme'")
    # the client's credentials really are put-only
    putter = boto3.client("s3", **put_only["putter"])
    for refused in (
        lambda: putter.list_objects_v2(Bucket="client-putonly"),
        lambda: putter.head_bucket(Bucket="client-putonly"),
        lambda: putter.delete_object(Bucket="client-putonly", Key="x"),
    ):
        with pytest.raises(ClientError):
            refused()

    dr = run_dag("events_client_check", run_conf={"client_id": "acme", "write_test_object": True})

    assert dr.state == "success", error_lines(caplog)
    got = findings(caplog)
    assert got["connection"][0] == "ok" and "'putonly_aws'" in got["connection"][1]
    assert got["test_object"][0] == "ok"
    assert "SSE requested AES256, applied AES256" in got["test_object"][1]
    assert got["delete_test_object"][0] == "warn" and "AccessDenied" in got["delete_test_object"][1]
    assert "the test object stays" in got["delete_test_object"][1]
    status, message = got["export_permissions"]
    assert status == "warn" and "HeadBucket (403)" in message and "ListBucket (AccessDenied)" in message
    key = re.search(r"PutObject s3://client-putonly/(\S+) allowed", got["test_object"][1])[1]
    # what the bucket holds now (read with the admin user; moto's auth is still on here)
    admin = boto3.client("s3", **put_only["admin"])
    head = admin.head_object(Bucket="client-putonly", Key=key)
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "application/json"
    body = json.loads(admin.get_object(Bucket="client-putonly", Key=key)["Body"].read())
    assert body["client_id"] == "acme" and body["written_by"] == "events_client_check"


def test_a_missing_bucket_fails_naming_the_bucket_and_the_client(export_env, db, run_dag, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_client(db, "ghost", "no-such-client-bucket", "ghost")

    dr = run_dag("events_client_check", run_conf={"client_id": "ghost"})

    assert dr.state == "failed"
    assert check_task(dr).try_number == 1  # a failed check is not retried
    got = findings(caplog)
    missing = "S3 bucket 'no-such-client-bucket' (client 'ghost' export_bucket) does not exist"
    assert got["test_object"][0] == "fail" and missing in got["test_object"][1]
    assert got["export_permissions"][0] == "fail" and missing in got["export_permissions"][1]
    assert got["delete_test_object"][0] == "skip"
    errors = error_lines(caplog)
    assert "client_check client=ghost: 2 check(s) failed: test_object: " in errors
    assert "export_permissions: " in errors and missing in errors


def test_an_unknown_client_id_fails_at_once_naming_the_field(export_env, db, run_dag, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_client(db, "acme", "client-acme", "acme")

    dr = run_dag("events_client_check", run_conf={"client_id": "acmee"})

    assert dr.state == "failed"
    assert check_task(dr).try_number == 1
    assert (
        "form field 'client_id' = 'acmee': no such client in clients (did you mean 'acme'?)"
        in error_lines(caplog)
    )
    assert findings(caplog) == {}


def test_a_client_inside_another_clients_space_writes_nothing_there(export_env, db, run_dag, caplog):
    s3 = export_env
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_client(db, "acme", "client-acme", "exports/acme")
    add_client(db, "intruder", "client-acme", "exports/acme/x")

    dr = run_dag("events_client_check", run_conf={"client_id": "intruder"})

    assert dr.state == "failed"
    got = findings(caplog)
    assert got["isolation"][0] == "fail" and "lies inside client 'acme'" in got["isolation"][1]
    assert got["test_object"][0] == "skip" and got["next_export"][0] == "skip"
    assert list_keys(s3, "client-acme") == []  # no test object in acme's space


def test_a_malformed_client_id_is_refused_by_the_form(export_env, run_dag):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="client_id"):
        run_dag("events_client_check", run_conf={"client_id": "Acme/../x"})
