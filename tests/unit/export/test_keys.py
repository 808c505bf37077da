"""Key layout of exports and the validation that keeps one client out of another's space."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events_pipeline.common.intervals import HourInterval
from events_pipeline.export.keys import (
    ExportLocation,
    TenantIsolationError,
    backup_location,
    backup_prefix,
    check_no_overlap,
    client_location,
    hour_of_folder,
    part_name,
    validate_bucket,
    validate_client_id,
    validate_prefix,
)

H = HourInterval(datetime(2026, 11, 27, 3, tzinfo=UTC))


def test_layout_of_client_and_backup_keys():
    loc = client_location("acme", "acme-exports", "events/v1", H)
    assert loc.key(part_name(0)) == "events/v1/dt=2026-11-27/hour=03/part-00000.parquet"
    assert loc.manifest_key == "events/v1/dt=2026-11-27/hour=03/_manifest.json"
    assert (
        loc.uri("part-00012.parquet")
        == "s3://acme-exports/events/v1/dt=2026-11-27/hour=03/part-00012.parquet"
    )
    backup = backup_location("acme", "events-backup", H)
    assert backup.manifest_key == "acme/dt=2026-11-27/hour=03/_manifest.json"


def test_keys_are_deterministic_per_client_hour_part():
    a = client_location("acme", "b-acme", "p", H).key(part_name(3))
    b = client_location("acme", "b-acme", "p", HourInterval(H.start)).key(part_name(3))
    assert a == b


@pytest.mark.parametrize(
    "client_id", ["Acme", "", "../x", "a/b", "a.b", "-acme", "a" * 64, "acme ", "ac\u00e9me"]
)
def test_invalid_client_ids(client_id):
    with pytest.raises(TenantIsolationError, match="client_id"):
        validate_client_id(client_id)


@pytest.mark.parametrize("client_id", ["acme", "a", "client_01", "x-y", "0" * 63])
def test_valid_client_ids(client_id):
    assert validate_client_id(client_id) == client_id


@pytest.mark.parametrize(
    ("prefix", "rule"),
    [
        ("", "empty"),
        ("/acme", "leading"),
        ("acme/", "trailing"),
        ("a//b", "empty segment"),
        ("..", "relative"),
        ("a/../b", "relative"),
        ("a/./b", "relative"),
        ("x/dt=2026-01-01", "dt="),
        ("hour=03", "dt="),
        ("DT=x", "dt="),
        ("a b", "characters"),
        ("a\\b", "characters"),
        (".hidden", "characters"),
        ("a/%2e%2e", "characters"),
        ("a" * 600, "longer"),
    ],
)
def test_invalid_prefixes(prefix, rule):
    with pytest.raises(TenantIsolationError, match=rule) as exc:
        validate_prefix(prefix, client_id="acme")
    assert "client 'acme'" in str(exc.value)


@pytest.mark.parametrize("prefix", ["acme", "exports/acme", "a.b/c_d/e-f", "dt-tricks", "hours", "x/dtx"])
def test_valid_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@given(st.text(alphabet="ab./=-_% \\dthour", max_size=20))
def test_any_accepted_prefix_stays_below_itself(prefix):
    try:
        validate_prefix(prefix)
    except TenantIsolationError:
        return
    key = client_location("acme", "bucket-a", prefix, H).key(part_name(0))
    segments = key.split("/")
    assert key.startswith(prefix + "/dt=2026-11-27/hour=03/")
    assert ".." not in segments and "" not in segments and "." not in segments
    assert sum(s.startswith("dt=") for s in segments) == 1


@pytest.mark.parametrize("bucket", ["ab", "Upper", "a..b", "-ab", "ab-", "a_b", "x" * 64])
def test_invalid_buckets(bucket):
    with pytest.raises(TenantIsolationError, match="bucket"):
        validate_bucket(bucket, what="client 'acme' export_bucket")


def test_file_names_cannot_escape_the_folder():
    loc = ExportLocation("b-ucket", "acme/dt=2026-11-27/hour=03")
    for bad in ("", "../x", "a/b", "..", "."):
        with pytest.raises(TenantIsolationError):
            loc.key(bad)
    with pytest.raises(ValueError, match="part number"):
        part_name(100_000)


OTHERS = [
    ("acme", "shared-bucket", "exports/acme"),
    ("globex", "shared-bucket", "exports/globex"),
    ("initech", "initech-bucket", "exports/acme"),
]


@pytest.mark.parametrize(
    ("client_id", "bucket", "prefix"),
    [
        ("intruder", "shared-bucket", "exports/acme"),  # same space
        ("intruder", "shared-bucket", "exports/acme/sub"),  # nested in acme's space
        ("intruder", "shared-bucket", "exports/globex/dt-x"),
    ],
)
def test_a_client_cannot_land_in_another_clients_space(client_id, bucket, prefix):
    with pytest.raises(TenantIsolationError, match="lies inside client"):
        check_no_overlap(client_id, bucket, prefix, OTHERS, "backup-bucket")


@pytest.mark.parametrize(
    ("client_id", "bucket", "prefix"),
    [
        ("acme", "shared-bucket", "exports/acme"),  # itself
        ("newco", "shared-bucket", "exports/acme-2"),  # sibling, not nested (segment-wise)
        ("newco", "shared-bucket", "exports/newco"),
        ("newco", "other-bucket", "exports/acme"),  # same prefix, other bucket
        ("outer", "shared-bucket", "exports"),  # outer: the nested ones are refused instead
    ],
)
def test_disjoint_spaces_are_accepted(client_id, bucket, prefix):
    check_no_overlap(client_id, bucket, prefix, OTHERS, "backup-bucket")


def test_the_backup_bucket_is_never_a_client_bucket():
    with pytest.raises(TenantIsolationError, match="backup bucket"):
        check_no_overlap("acme", "backup-bucket", "acme", [], "backup-bucket")


def test_the_backup_prefix_holds_every_hour_of_the_client():
    assert backup_prefix("acme") == "acme/"
    assert backup_location("acme", "events-backup", H).folder.startswith(backup_prefix("acme"))
    with pytest.raises(TenantIsolationError, match="client_id"):
        backup_prefix("acme/dt=2026-11-27")


@pytest.mark.parametrize(
    "hour",
    [
        H,
        HourInterval(datetime(2026, 12, 31, 23, tzinfo=UTC)),
        HourInterval(datetime(2028, 2, 29, 0, tzinfo=UTC)),
    ],
)
def test_hour_of_folder_reads_back_both_layouts(hour):
    assert hour_of_folder(client_location("acme", "acme-exports", "events/v1", hour).folder) == hour
    assert hour_of_folder(backup_location("acme", "events-backup", hour).folder) == hour
    assert hour_of_folder(hour.partition_path) == hour


@pytest.mark.parametrize(
    "folder",
    [
        "acme",
        "",
        "acme/dt=2026-11-27",
        "acme/dt=2026-11-27/hour=03/sub",
        "acme/dt=2026-11-27/hour=3",
        "acme/dt=2026-11-27/hour=24",
        "acme/dt=2026-02-30/hour=03",
        "acme/xdt=2026-11-27/hour=03",
        "acme/dt=2026-11-27/hour=03/",
    ],
)
def test_hour_of_folder_refuses_other_folders(folder):
    with pytest.raises(ValueError, match="not an export hour's folder"):
        hour_of_folder(folder)


# --- the landing bucket and earlier objects (export/keys.py check_destination) -------------

T1 = datetime(2026, 11, 1, tzinfo=UTC)
T2 = datetime(2026, 11, 20, tzinfo=UTC)


def _check(client_id="acme", bucket="acme-exports", prefix="events", **kw):
    from events_pipeline.export.keys import check_destination

    kw.setdefault("backup_bucket", "events-backup")
    kw.setdefault("landing_bucket", "events-landing")
    check_destination(client_id, bucket, prefix, **kw)


def test_check_destination_accepts_a_valid_client():
    _check()


def test_the_landing_bucket_is_never_a_clients_bucket():
    with pytest.raises(TenantIsolationError, match=r"client 'acme'.*landing bucket.*events_landing_bucket"):
        _check(bucket="events-landing")


def test_the_landing_bucket_is_never_the_backup_bucket():
    refused = r"client 'acme'.*events_backup_bucket.*events_landing_bucket"
    with pytest.raises(TenantIsolationError, match=refused):
        _check(backup_bucket="events-landing", landing_bucket="events-landing")


@pytest.mark.parametrize(
    ("mine", "since", "others", "refused"),
    [
        # an outer client configured after a nested one exported: would hold its objects
        ("exports", None, [("acme", "exports/acme", T1, True)], "would hold client 'acme'"),
        ("exports", T2, [("acme", "exports/acme", T1, True)], "would hold client 'acme'"),
        # the nested client that exported first keeps exporting under a newer outer one
        ("exports/acme", T1, [("newco", "exports", None, True)], None),
        ("exports/acme", T1, [("newco", "exports", T2, True)], None),
        # an outer client that exported first keeps exporting; a newer nested one is refused
        ("exports", T1, [("nested", "exports/nested", None, True)], None),
        ("exports/nested", None, [("outer", "exports", T1, True)], "lies inside client 'outer'"),
        # a prefix another client exported to and left (its objects stay)
        ("exports/acme", None, [("acme", "exports/acme", T1, False)], "earlier s3://shared/exports/acme/"),
        ("exports/acme/x", None, [("acme", "exports/acme", T1, False)], "inside client 'acme''s earlier"),
        ("exports", None, [("acme", "exports/acme", T1, False)], "would hold client 'acme''s earlier"),
        # equal prefixes: whoever exported first keeps it
        ("exports/acme", T1, [("newco", "exports/acme", None, True)], None),
        ("exports/acme", None, [("acme", "exports/acme", T1, True)], "lies inside client 'acme'"),
        # disjoint, or never exported and outer: accepted as before
        ("exports/acme-2", None, [("acme", "exports/acme", T1, True)], None),
        ("exports", None, [("acme", "exports/acme", None, True)], None),
    ],
)
def test_the_first_client_in_a_space_keeps_it(mine, since, others, refused):
    from events_pipeline.export.keys import ExportSpace

    spaces = [ExportSpace(cid, "shared", prefix, when, current) for cid, prefix, when, current in others]
    client = "newco" if all(s.client_id != "newco" for s in spaces) else "acme"
    if refused is None:
        check_no_overlap(client, "shared", mine, spaces, "events-backup", since=since)
    else:
        with pytest.raises(TenantIsolationError, match=re.escape(refused)):
            check_no_overlap(client, "shared", mine, spaces, "events-backup", since=since)
