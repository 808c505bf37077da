"""Per-client export options through events_export: formats, compressions, SSE, part bounds, consumers.

Real PostgreSQL (migration 0090's CHECK constraints) and the moto S3 server (it records
the SSE headers of every put: checked with head_object). Every format/compression
combination is read back with pyarrow and DuckDB and compared field by field with
events_log.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events_pipeline.export.formats import FILE_TYPES, decompress
from events_pipeline.export.manifest import read_manifest
from events_pipeline.export.parquet_parts import DICTIONARY_COLUMNS, arrow_schema
from tests.integration.export.conftest import (
    HOUR,
    add_client,
    folder,
    insert_rows,
    list_keys,
    make_rows,
    run_hour,
    spread,
)
from tests.unit.export.golden_parts import GOLDEN_PARTS, GOLDEN_PYARROW, T0, awkward_row

BUCKET = "client-formats"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#: One client per format/compression combination, each with another encryption setting.
COMBINATIONS = {
    # client: (format, compression, sse, kms key)
    "pq-zstd": ("parquet", "zstd", None, None),
    "pq-gzip": ("parquet", "gzip", "AES256", None),
    "pq-snappy": ("parquet", "snappy", "aws:kms", KEY_ARN),
    "pq-none": ("parquet", "none", None, None),
    "jl-none": ("jsonl", "none", "AES256", None),
    "jl-gzip": ("jsonl", "gzip", "aws:kms", "alias/events-export"),
    "jl-zstd": ("jsonl", "zstd", None, None),
}
FLAT = [n for n in arrow_schema().names if n != "raw_event_data"]
TIMESTAMPS = ("timestamp", "created_at")


def set_options(db: Any, client_id: str, **options: Any) -> None:
    """Set export option columns of a client (``format="jsonl"`` sets ``export_format``...).

    :param db: autocommit connection.
    :param client_id: the client.
    :param options: option name without the ``export_`` prefix -> value.
    """
    sets = ", ".join(f"export_{name} = %s" for name in options)
    db.execute(f"UPDATE clients SET {sets} WHERE client_id = %s", (*options.values(), client_id))  # noqa: S608


def nested_json(depth: int) -> Any:
    """A big nested JSON value: objects, arrays, unicode, escapes, big and float numbers, null."""
    value: Any = {"leaf": 'ü"\\/\t€😀\u2028', "n": 12345678901234567890, "f": 1.5e-7, "t": True, "z": None}
    for i in range(depth):
        value = {f"k{i}": value, "list": [i, str(i), None, {"x": [i] * 3}], "empty": {}, "e": []}
    return value


def awkward_rows(client_id: str, hour: datetime) -> list[dict[str, Any]]:
    """Demo rows of the hour with the awkward values a consumer must read back unchanged."""
    rows = make_rows(client_id, spread(hour, 12), seed=len(client_id))
    rows[0].update(url='https://acme.com/a,"b"\nc\r\n\u2028', user_agent="", session_id=None, path="/ü/日本")
    rows[1].update(ip_address="2001:db8::1", raw_event_data=json.dumps(nested_json(25), indent=2))
    rows[2].update(timestamp=datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), visitor_id="")
    rows[3].update(
        raw_event_data='{"k": "v\\"\\\\,\\n", "n": [1, null], "u": "\\ud83d\\ude00", "dup": 1, "": ""}',
        ip_address="::ffff:192.0.2.1",
        event_type='quote"and,comma',
    )
    rows[4].update(batch_id=None, site_id=None, url=None, path=None, user_agent=None, visitor_id=None)
    return rows


def db_rows(db: Any, client_id: str) -> list[dict[str, Any]]:
    """The client's rows as events_log holds them, in export order; ``ip_address`` in inet's text form
    and ``raw_event_data`` as its stored text."""
    cur = db.execute(
        'SELECT event_id::text, event_type, session_id, visitor_id, site_id, "timestamp", url, path, '
        "user_agent, abbrev(ip_address) AS ip_address, raw_event_data::text AS raw_event_data, "
        "created_at, batch_id, client_id FROM events_log WHERE client_id = %s ORDER BY created_at, id",
        (client_id,),
    )
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def fetch(s3: Any, bucket: str, key: str) -> bytes:
    """Return an object's bytes."""
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def download_hour(s3: Any, bucket: str, hour_folder: str, tmp: Path) -> tuple[dict[str, Any], list[Path]]:
    """Download an hour as a client would: the manifest, then each file it lists, checked against it."""
    manifest = read_manifest(fetch(s3, bucket, f"{hour_folder}/_manifest.json"))
    paths = []
    tmp.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        body = fetch(s3, bucket, f"{hour_folder}/{entry['key']}")
        assert len(body) == entry["bytes"] and hashlib.sha256(body).hexdigest() == entry["sha256"]
        path = tmp / entry["key"]
        path.write_bytes(body)
        paths.append(path)
    return manifest, paths


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]], what: str) -> None:
    """Compare rows field by field (``raw_event_data`` as parsed JSON when not text)."""
    assert len(got) == len(expected), what
    for i, (row, exp) in enumerate(zip(got, expected, strict=True)):
        for name in row:
            value, want = row[name], exp[name]
            if name == "raw_event_data":
                value = json.loads(value) if isinstance(value, str) else value
                want = json.loads(want)
            assert value == want, (what, i, name, value, want)


# --- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "constraint"),
    [
        # an unknown format breaks both rules: PostgreSQL names whichever it checks first
        ({"format": "csv"}, "clients_export_(format|compression)_valid"),
        ({"format": "jsonl", "compression": "snappy"}, "clients_export_compression_valid"),
        ({"compression": "lz4"}, "clients_export_compression_valid"),
        ({"sse": "aws:kms:dsse"}, "clients_export_sse_valid"),
        ({"sse": "aws:kms"}, "clients_export_sse_kms_key"),
        ({"sse": "AES256", "sse_kms_key_id": KEY_ARN}, "clients_export_sse_kms_key"),
        ({"sse_kms_key_id": KEY_ARN}, "clients_export_sse_kms_key"),
        ({"sse": "aws:kms", "sse_kms_key_id": "has space"}, "clients_export_sse_kms_key"),
        ({"part_max_bytes": 1000}, "clients_export_part_max_bytes_range"),
        ({"part_max_rows": 10}, "clients_export_part_max_rows_range"),
    ],
)
def test_invalid_options_are_refused_by_the_table(services, clean_tables, db, options, constraint):
    add_client(db, "acme", "client-acme", "acme")
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        set_options(db, "acme", **options)


def test_every_valid_combination_is_accepted_and_defaults_are_todays(services, clean_tables, db):
    add_client(db, "acme", "client-acme", "acme")
    defaults = db.execute(
        "SELECT export_format, export_compression, export_sse, export_sse_kms_key_id, "
        "export_part_max_bytes, export_part_max_rows FROM clients"
    ).fetchone()
    assert defaults == ("parquet", "zstd", None, None, None, None)
    for fmt, compression in FILE_TYPES:
        set_options(db, "acme", format=fmt, compression=compression)
    set_options(db, "acme", sse="aws:kms", sse_kms_key_id="alias/aws/s3", part_max_bytes=1 << 20)
    set_options(db, "acme", sse=None, sse_kms_key_id=None, part_max_rows=1000)


# --- exports ---------------------------------------------------------------------------------


def test_a_client_with_default_options_gets_the_same_objects_as_before(export_env, db, run_dag):
    """Byte for byte: the part equals the one the writer produced before per-client options
    existed (golden sha256), the object headers are the same (no SSE), the keys are the same."""
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    insert_rows(db, [awkward_row(i) for i in range(250)])
    assert run_hour(run_dag, T0).state == "success"

    hour_folder, backup_folder = folder("acme", T0), folder("acme", T0)
    assert list_keys(s3, "client-acme") == [
        f"{hour_folder}/_manifest.json",
        f"{hour_folder}/part-00000.parquet",
    ]
    assert list_keys(s3, "test-backup") == [
        f"{backup_folder}/_manifest.json",
        f"{backup_folder}/part-00000.parquet",
    ]
    body = fetch(s3, "client-acme", f"{hour_folder}/part-00000.parquet")
    if pa.__version__ == GOLDEN_PYARROW:
        assert [("part-00000.parquet", 250, hashlib.sha256(body).hexdigest())] == GOLDEN_PARTS["defaults"]
    # and independently: exactly what today's writer settings make of these rows
    table = pq.read_table(io.BytesIO(body))
    ref = io.BytesIO()
    pq.write_table(
        table,
        ref,
        row_group_size=table.num_rows,
        compression="zstd",
        compression_level=1,
        use_dictionary=list(DICTIONARY_COLUMNS),
        write_statistics=True,
    )
    assert ref.getvalue() == body
    assert fetch(s3, "test-backup", f"{backup_folder}/part-00000.parquet") == body
    for bucket, key in (
        ("client-acme", f"{hour_folder}/part-00000.parquet"),
        ("test-backup", f"{backup_folder}/part-00000.parquet"),
    ):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "application/vnd.apache.parquet"
        assert head["Metadata"] == {"sha256": hashlib.sha256(body).hexdigest()}
        assert "ServerSideEncryption" not in head and "SSEKMSKeyId" not in head
    head = s3.head_object(Bucket="client-acme", Key=f"{hour_folder}/_manifest.json")
    assert head["ContentType"] == "application/json" and "ServerSideEncryption" not in head
    manifest = read_manifest(fetch(s3, "client-acme", f"{hour_folder}/_manifest.json"))
    assert (manifest["format"], manifest["compression"], manifest["encryption"]) == (
        "parquet",
        "zstd",
        {"sse": "none"},
    )
    assert manifest["files"] == [
        {
            "key": "part-00000.parquet",
            "rows": 250,
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": "application/vnd.apache.parquet",
        }
    ]


@pytest.fixture
def every_combination(export_env, db, run_dag) -> Any:
    """One client per format/compression combination (and SSE setting), one exported hour each."""
    s3 = export_env
    s3.create_bucket(Bucket=BUCKET)
    for client_id, (fmt, compression, sse, key_id) in COMBINATIONS.items():
        add_client(db, client_id, BUCKET, f"exports/{client_id}")
        set_options(db, client_id, format=fmt, compression=compression, sse=sse, sse_kms_key_id=key_id)
        insert_rows(db, awkward_rows(client_id, HOUR))
    dr = run_hour(run_dag, HOUR)
    assert dr.state == "success"
    return s3


def test_every_combination_is_written_with_its_names_types_and_encryption(every_combination, db):
    s3 = every_combination
    for client_id, (fmt, compression, sse, key_id) in COMBINATIONS.items():
        extension, content_type = FILE_TYPES[(fmt, compression)]
        hour_folder, backup_folder = folder(f"exports/{client_id}", HOUR), folder(client_id, HOUR)
        part, manifest_key = f"part-00000{extension}", "_manifest.json"
        assert list_keys(s3, BUCKET, f"exports/{client_id}/") == sorted(
            [f"{hour_folder}/{manifest_key}", f"{hour_folder}/{part}"]
        )
        assert list_keys(s3, "test-backup", f"{client_id}/") == sorted(
            [f"{backup_folder}/{manifest_key}", f"{backup_folder}/{part}"]
        )
        manifest = read_manifest(fetch(s3, BUCKET, f"{hour_folder}/{manifest_key}"))
        assert (manifest["format"], manifest["compression"]) == (fmt, compression)
        expected_encryption = {"sse": sse or "none", **({"kms_key_id": key_id} if key_id else {})}
        assert manifest["encryption"] == expected_encryption
        assert [f["content_type"] for f in manifest["files"]] == [content_type]
        assert fetch(s3, "test-backup", f"{backup_folder}/{manifest_key}") == fetch(
            s3, BUCKET, f"{hour_folder}/{manifest_key}"
        )
        for name in (part, manifest_key):
            head = s3.head_object(Bucket=BUCKET, Key=f"{hour_folder}/{name}")
            assert head.get("ServerSideEncryption") == sse, (client_id, name)
            assert head.get("SSEKMSKeyId") == key_id, (client_id, name)
            backup_head = s3.head_object(Bucket="test-backup", Key=f"{backup_folder}/{name}")
            assert "ServerSideEncryption" not in backup_head  # the backup bucket keeps its own default
        assert s3.head_object(Bucket=BUCKET, Key=f"{hour_folder}/{part}")["ContentType"] == content_type


def test_every_combination_reads_back_field_by_field_with_pyarrow_and_duckdb(every_combination, db, tmp_path):
    import duckdb
    import pyarrow.json as pj

    s3 = every_combination
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    flat_schema = pa.schema([arrow_schema().field(n) for n in FLAT])
    for client_id, (fmt, compression, _sse, _key) in COMBINATIONS.items():
        expected = db_rows(db, client_id)
        assert len(expected) == 12
        _, (path,) = download_hour(s3, BUCKET, folder(f"exports/{client_id}", HOUR), tmp_path / client_id)
        if fmt == "parquet":
            # pyarrow
            table = pq.read_table(path)
            assert table.schema.equals(arrow_schema())
            assert_same_rows(table.to_pylist(), expected, f"{client_id} pyarrow")
            for row, exp in zip(table.to_pylist(), expected, strict=True):
                assert row["raw_event_data"] == exp["raw_event_data"]  # the stored text, byte for byte
            # DuckDB
            cur = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
            names = [d[0] for d in cur.description]
            assert names == arrow_schema().names
            assert_same_rows([dict(zip(names, r, strict=True)) for r in cur.fetchall()], expected, client_id)
            continue
        # JSON Lines: every line is one object with the Parquet columns' fields, in order
        lines = decompress(path.read_bytes(), compression).decode("utf-8").split("\n")
        assert lines[-1] == "" and len(lines) == 13
        objects = [json.loads(line) for line in lines[:-1]]
        assert all(list(o) == arrow_schema().names for o in objects)
        for o, exp in zip(objects, expected, strict=True):
            for t in TIMESTAMPS:
                assert o[t] == exp[t].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            assert o["raw_event_data"] == json.loads(exp["raw_event_data"])
        # pyarrow.json (compression detected from the file name): the flat fields with their types
        table = pj.read_json(
            path,
            parse_options=pj.ParseOptions(explicit_schema=flat_schema, unexpected_field_behavior="ignore"),
        )
        assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in flat_schema]
        assert_same_rows(
            table.to_pylist(),
            [{k: v for k, v in e.items() if k in FLAT} for e in expected],
            f"{client_id} pj",
        )
        # DuckDB read_json with the documented column types (raw_event_data as JSON)
        codec = compression  # DuckDB names them as the clients table does
        columns = dict.fromkeys(FLAT, "VARCHAR") | dict.fromkeys(TIMESTAMPS, "TIMESTAMPTZ")
        columns["raw_event_data"] = "JSON"
        spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
        cur = con.execute(
            f"SELECT {', '.join(arrow_schema().names)} FROM read_json(?, format='newline_delimited', "  # noqa: S608
            f"compression='{codec}', columns={spec})",
            [str(path)],
        )
        names = [d[0] for d in cur.description]
        assert_same_rows(
            [dict(zip(names, r, strict=True)) for r in cur.fetchall()], expected, f"{client_id} duck"
        )
        # DuckDB read_json_auto: detects the timestamps by itself
        cur = con.execute(f"SELECT * FROM read_json_auto(?, compression='{codec}')", [str(path)])  # noqa: S608
        types = {d[0]: str(d[1]) for d in cur.description}
        assert types["timestamp"] == types["created_at"] == "TIMESTAMP WITH TIME ZONE"
        assert types["event_id"] == "UUID"  # detected from the values
        auto = [dict(zip(types, r, strict=True)) for r in cur.fetchall()]
        for row, exp in zip(auto, expected, strict=True):
            for name in FLAT:
                value = str(row[name]) if name == "event_id" else row[name]
                assert value == exp[name], (client_id, "auto", name)


def test_jsonl_re_run_rewrites_identical_objects(every_combination, db, run_dag):
    s3 = every_combination
    before = {
        c: read_manifest(fetch(s3, BUCKET, f"{folder(f'exports/{c}', HOUR)}/_manifest.json"))["files"]
        for c in COMBINATIONS
    }
    assert run_hour(run_dag, HOUR).state == "success"
    after = {
        c: read_manifest(fetch(s3, BUCKET, f"{folder(f'exports/{c}', HOUR)}/_manifest.json"))["files"]
        for c in COMBINATIONS
    }
    assert after == before  # same keys, rows, sizes and sha256 for every format


def test_a_format_change_rewrites_a_published_hour_without_stale_parts(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    insert_rows(db, make_rows("acme", spread(HOUR, 5), seed=3))
    assert run_hour(run_dag, HOUR).state == "success"
    set_options(db, "acme", format="jsonl", compression="gzip")
    assert run_hour(run_dag, HOUR).state == "success"
    hour_folder = folder("acme", HOUR)
    assert list_keys(s3, "client-acme") == [
        f"{hour_folder}/_manifest.json",
        f"{hour_folder}/part-00000.jsonl.gz",
    ]
    manifest = read_manifest(fetch(s3, "client-acme", f"{hour_folder}/_manifest.json"))
    assert (manifest["format"], manifest["row_count"]) == ("jsonl", 5)


def test_a_clients_own_part_bounds_apply_to_it_only(export_env, db, run_dag):
    s3 = export_env
    add_client(db, "acme", "client-acme", "acme")
    add_client(db, "globex", "client-globex", "globex")
    set_options(db, "acme", format="jsonl", compression="zstd", part_max_rows=1000)
    insert_rows(db, make_rows("acme", spread(HOUR, 2500), seed=1))
    insert_rows(db, make_rows("globex", spread(HOUR, 2500), seed=2))
    assert run_hour(run_dag, HOUR).state == "success"
    acme = read_manifest(fetch(s3, "client-acme", f"{folder('acme', HOUR)}/_manifest.json"))
    globex = read_manifest(fetch(s3, "client-globex", f"{folder('globex', HOUR)}/_manifest.json"))
    assert [(f["key"], f["rows"]) for f in acme["files"]] == [
        ("part-00000.jsonl.zst", 1000),
        ("part-00001.jsonl.zst", 1000),
        ("part-00002.jsonl.zst", 500),
    ]
    assert [(f["key"], f["rows"]) for f in globex["files"]] == [("part-00000.parquet", 2500)]
    ids = set()
    for f in acme["files"]:
        body = fetch(s3, "client-acme", f"{folder('acme', HOUR)}/{f['key']}")
        ids |= {json.loads(line)["event_id"] for line in decompress(body, "zstd").splitlines()}
    assert len(ids) == 2500


def test_timestamps_keep_microseconds_in_every_format(every_combination):
    s3 = every_combination
    body = fetch(s3, BUCKET, f"{folder('exports/jl-none', HOUR)}/part-00000.jsonl")
    stamps = [json.loads(line)["timestamp"] for line in body.splitlines()]
    assert "2026-01-31T23:59:59.999999Z" in stamps
    assert all(len(s) == len("2026-01-31T23:59:59.999999Z") and s.endswith("Z") for s in stamps)
    table = pq.read_table(
        io.BytesIO(fetch(s3, BUCKET, f"{folder('exports/pq-none', HOUR)}/part-00000.parquet"))
    )
    assert datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC) in table.column("timestamp").to_pylist()
    assert HOUR - timedelta(hours=1) < max(table.column("created_at").to_pylist()) < HOUR + timedelta(hours=1)
