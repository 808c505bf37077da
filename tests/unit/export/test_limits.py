"""The bounds of one client's export: S3 timeouts and attempts, per client overridable."""

from __future__ import annotations

import json

import pytest

from events_pipeline.common.errors import SettingError
from events_pipeline.export.limits import ExportLimits, S3Clients, bounded_s3_client


def _conn(**extra) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "k",
            "password": "s",
            "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1", **extra},
        }
    )


def test_every_s3_call_is_bounded_by_the_limits(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_AWS", _conn())
    config = bounded_s3_client(
        "plain_aws", ExportLimits(s3_connect_timeout=3, s3_read_timeout=7, s3_max_attempts=2)
    )
    config = config.meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 7)
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}


def test_a_clients_connection_sets_its_own_timeouts(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLOW_AWS", _conn(config_kwargs={"read_timeout": 300}))
    config = bounded_s3_client("slow_aws", ExportLimits(s3_read_timeout=7)).meta.config
    assert config.read_timeout == 300 and config.connect_timeout == 10  # its own value wins, ours fill in


def test_the_worst_call_is_known_and_clients_are_built_once_per_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_AWS", _conn())
    limits = ExportLimits(s3_connect_timeout=2, s3_read_timeout=5, s3_max_attempts=3)
    assert limits.worst_s3_call_seconds == 21
    clients = S3Clients(limits)
    assert clients.get("plain_aws") is clients.get("plain_aws")


def test_a_missing_connection_fails_naming_it():
    with pytest.raises(SettingError, match="AIRFLOW_CONN_NOT_THERE"):
        bounded_s3_client("not_there", ExportLimits())


@pytest.mark.parametrize("bad", [{"s3_read_timeout": 0}, {"s3_max_attempts": 0}, {"lock_wait_seconds": -1}])
def test_limits_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match="export limit"):
        ExportLimits(**bad)
