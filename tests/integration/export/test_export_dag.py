"""events_export through dag.test(): files, manifest, marking, export_runs, per-client mapping."""

from __future__ import annotations

from datetime import timedelta

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


def test_exports_each_client_hour_to_both_buckets(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "exports/acme")
    add_client(db, "globex", "client-globex", "globex", privacy_level="gdpr")
    insert_rows(db, make_rows("acme", spread(HOUR, 40), seed=1))
    insert_rows(db, make_rows("globex", spread(HOUR, 15), seed=2))
    insert_rows(db, make_rows("acme", spread(HOUR + timedelta(hours=1), 5), seed=3))  # next hour
    insert_rows(db, make_rows(None, spread(HOUR, 4), seed=4))  # unattributed

    dr = run_hour(run_dag, HOUR)
    assert dr.state == "success", task_states(dr)

    manifest, table = read_hour(s3, "client-acme", folder("exports/acme", HOUR))
    assert manifest["row_count"] == 40 == table.num_rows
    assert manifest["client_id"] == "acme"
    assert set(table.column("client_id").to_pylist()) == {"acme"}
    _, backup = read_hour(s3, "test-backup", folder("acme", HOUR))
    assert backup.equals(table)
    g_manifest, g_table = read_hour(s3, "client-globex", folder("globex", HOUR))
    assert g_manifest["row_count"] == 15 == g_table.num_rows
    # nothing else landed anywhere
    assert list_keys(s3, "client-acme") == [
        f"{folder('exports/acme', HOUR)}/_manifest.json",
        f"{folder('exports/acme', HOUR)}/part-00000.parquet",
    ]
    status = dict(
        db.execute(
            "SELECT coalesce(client_id, '-') || ':' || export_status, count(*) FROM events_log GROUP BY 1"
        ).fetchall()
    )
    assert status == {"acme:exported": 40, "acme:pending": 5, "globex:exported": 15, "-:pending": 4}
    run = db.execute(
        "SELECT status, row_count, bytes, jsonb_array_length(files), manifest_key, backup_manifest_key, "
        "attempts FROM export_runs WHERE client_id = 'acme'"
    ).fetchone()
    assert run[0] == "succeeded" and run[1] == 40 and run[2] > 0 and run[3] == 1
    assert run[4] == f"s3://client-acme/{folder('exports/acme', HOUR)}/_manifest.json"
    assert run[5] == f"s3://test-backup/{folder('acme', HOUR)}/_manifest.json"
    # one mapped task instance per client, named by the client
    tis = [ti for ti in dr.get_task_instances() if ti.task_id == "export_group"]
    assert sorted(ti.rendered_map_index for ti in tis) == ["g01: acme", "g02: globex"]
