"""Many clients per task, the trigger form, and Asset events, through ``dag.test()``.

- clients are packed into at most ``events_export_max_groups`` mapped tasks named by
  their clients; one client's failure never stops its group's others; the group fails at
  the end naming it; a retry exports only the clients not published by this run;
- per-client results are the task's return value (XCom), and in XCom when it fails;
- the trigger form re-exports named clients for an hour range, exactly once, touching
  no other client; without form hours a manual run covers the hour ending at its
  logical date;
- every published client-hour emits an Asset event with its figures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from events_pipeline.export import client_hour as exporting
from events_pipeline.export.client_hour import ExportError
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
)

H0, H1, H2 = HOUR, HOUR + timedelta(hours=1), HOUR + timedelta(hours=2)
CLIENTS = [f"c{i:02d}" for i in range(10)]


def _groups(dr) -> list:
    return sorted(
        (ti for ti in dr.get_task_instances() if ti.task_id == "export_group"), key=lambda ti: ti.map_index
    )


def _xcom(ti, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalar(
            XComModel.get_many(
                run_id=ti.run_id, key=key, dag_ids=ti.dag_id, task_ids=ti.task_id, map_indexes=ti.map_index
            ).with_only_columns(XComModel.value)
        )
    return XComModel.deserialize_value(type("R", (), {"value": row})()) if row is not None else None


def _etags(s3) -> dict[str, str]:
    """ETag of every data part, and the files listed by every manifest (its generated_at changes)."""
    out = {}
    for key in list_keys(s3, "client-many"):
        if key.endswith("_manifest.json"):
            out[key] = str(read_hour(s3, "client-many", key.rsplit("/", 1)[0])[0]["files"])
        else:
            out[key] = s3.head_object(Bucket="client-many", Key=key)["ETag"]
    return out


def _attempts(db) -> dict[str, int]:
    return dict(db.execute("SELECT client_id, attempts FROM export_runs").fetchall())


@pytest.fixture
def ten_clients(export_env, db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_EXPORT_MAX_GROUPS", "3")
    export_env.create_bucket(Bucket="client-many")
    for i, cid in enumerate(CLIENTS):
        add_client(db, cid, "client-many", f"tenants/{cid}")
        insert_rows(db, make_rows(cid, spread(H0, 3 + 4 * i), seed=i))
    return export_env


def test_clients_are_packed_into_groups_and_a_failing_one_stops_no_other(ten_clients, db, run_dag):
    s3 = ten_clients
    db.execute("UPDATE clients SET export_bucket = 'no-such-bucket' WHERE client_id = 'c04'")
    dr = run_hour(run_dag, H0)
    groups = _groups(dr)
    assert len(groups) == 3
    labels = [ti.rendered_map_index for ti in groups]
    named = sorted(c for label in labels for c in label.split(": ", 1)[1].split(","))
    assert named == CLIENTS  # every client in exactly one group, named in the UI
    for cid in CLIENTS:
        if cid != "c04":
            manifest, _ = read_hour(s3, "client-many", folder(f"tenants/{cid}", H0))
            assert manifest["row_count"] == 3 + 4 * CLIENTS.index(cid)
    failed = [ti for ti in groups if "c04" in ti.rendered_map_index]
    assert [str(ti.state) for ti in failed] == ["failed"] and failed[0].try_number == 1  # permanent: no retry
    assert {str(ti.state) for ti in groups if ti not in failed} == {"success"}
    # per-client figures in XCom: the return value of the others, a key of the failed group
    ok = _xcom(next(ti for ti in groups if ti not in failed))
    some = next(iter(ok["clients"]))
    assert ok["clients"][some][H0.isoformat()]["rows"] > 0 and ok["failed"] == []
    bad = _xcom(failed[0], "client_results")
    assert [f["client_id"] for f in bad["failed"]] == ["c04"]
    assert "no-such-bucket" in bad["failed"][0]["error"]
    assert len(bad["clients"]) == len(failed[0].rendered_map_index.split(": ", 1)[1].split(","))


def test_a_retry_exports_only_the_clients_that_failed(ten_clients, db, run_dag, monkeypatch):
    real = exporting._Uploader.upload_file
    failed_once: list[str] = []

    def upload_file(self, path, info):
        if self.client.client_id == "c07" and not failed_once:
            failed_once.append("c07")
            raise ExportError("injected: S3 answered 503 for client c07")
        return real(self, path, info)

    monkeypatch.setattr(exporting._Uploader, "upload_file", upload_file)
    dr = run_hour(run_dag, H0)
    assert dr.state == "success", task_states(dr)
    tries = {ti.rendered_map_index: ti.try_number for ti in _groups(dr)}
    flaky = next(label for label in tries if "c07" in label)
    assert tries[flaky] == 2 and all(t == 1 for label, t in tries.items() if label != flaky)
    attempts = _attempts(db)
    assert attempts.pop("c07") == 2  # failed, then exported by the retry
    assert set(attempts.values()) == {1}  # its group's others were not exported again
    assert db.execute("SELECT count(*) FROM export_runs WHERE status <> 'succeeded'").fetchone()[0] == 0


def test_the_form_re_exports_named_clients_for_an_hour_range_only(ten_clients, db, run_dag):
    s3 = ten_clients
    for cid in CLIENTS:
        insert_rows(db, make_rows(cid, spread(H1, 2), seed=100))
    assert run_hour(run_dag, H0).state == "success"
    assert run_hour(run_dag, H1).state == "success"
    before = _etags(s3)
    attempts = _attempts(db)

    conf = {"clients": ["c02", "c05"], "first_hour": H0.isoformat(), "last_hour": H1.isoformat()}
    dr = run_dag("events_export", logical_date=H2 + timedelta(hours=5), run_conf=conf)
    assert dr.state == "success", task_states(dr)
    assert [ti.rendered_map_index for ti in _groups(dr)] == ["g01: c05", "g02: c02"]  # heaviest first
    after = _attempts(db)
    assert {c for c in CLIENTS if after[c] != attempts[c]} == {"c02", "c05"}
    runs = db.execute(
        "SELECT client_id, interval_start, attempts FROM export_runs WHERE client_id IN ('c02', 'c05')"
    ).fetchall()
    assert len(runs) == 4 and all(a == 2 for _c, _h, a in runs)  # each of the 2 hours: exported twice
    # exactly once: the same keys with the same bytes, nothing added anywhere
    assert _etags(s3) == before


def test_a_manual_run_without_form_hours_covers_the_hour_ending_at_its_logical_date(ten_clients, db, run_dag):
    dr = run_dag("events_export", logical_date=H1, run_conf={"clients": ["c01"]})
    assert dr.state == "success"
    assert db.execute("SELECT client_id, interval_start FROM export_runs").fetchall() == [("c01", H0)]


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"first_hour": "2026-11-27T09:30:00Z"}, "first_hour"),
        ({"first_hour": "2026-11-27T09:00:00Z", "last_hour": "2026-11-27T08:00:00Z"}, "last_hour"),
        ({"first_hour": "2999-01-01T00:00:00Z"}, "last_hour"),
        ({"clients": ["nobody"]}, "clients"),
    ],
)
def test_a_wrong_form_fails_the_plan_naming_the_field(export_env, db, run_dag, conf, field, caplog):
    add_client(db, "acme", "client-acme", "acme")
    dr = run_dag("events_export", logical_date=H1, run_conf=conf)
    assert task_states(dr)["plan_export"] == "failed"
    assert [ti.try_number for ti in dr.get_task_instances() if ti.task_id == "plan_export"] == [1]
    assert any(f"'{field}'" in r.getMessage() for r in caplog.records)
    assert db.execute("SELECT count(*) FROM export_runs").fetchone()[0] == 0


def test_every_published_client_hour_emits_an_asset_event(export_env, db, run_dag):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    add_client(db, "acme", "client-acme", "exports/acme")
    add_client(db, "globex", "client-globex", "globex")
    insert_rows(db, make_rows("acme", spread(H0, 7), seed=1))
    with create_session() as session:
        seen = session.scalar(select(AssetEvent.id).order_by(AssetEvent.id.desc()).limit(1)) or 0
    assert run_hour(run_dag, H0).state == "success"
    with create_session() as session:
        events = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.id > seen, AssetModel.uri.like("s3://%"))
        ).all()
    by_uri = dict(events)
    assert set(by_uri) == {"s3://client-acme/exports/acme", "s3://client-globex/globex"}
    acme = by_uri["s3://client-acme/exports/acme"]
    assert acme["client_id"] == "acme" and acme["rows"] == 7 and acme["bytes"] > 0
    assert acme["interval_start"] == H0.isoformat()
    assert acme["manifest_key"] == f"s3://client-acme/{folder('exports/acme', H0)}/_manifest.json"
    assert by_uri["s3://client-globex/globex"]["rows"] == 0
