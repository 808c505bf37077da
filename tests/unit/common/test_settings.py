"""Settings: required Variables fail with a message naming the Variable and its env name."""

from __future__ import annotations

import pytest

from events_pipeline.common.errors import SettingError
from events_pipeline.common.settings import SETTINGS, Setting, get_setting, register


def test_required_setting_missing_names_variable_and_environment(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_VAR_EVENTS_LANDING_BUCKET", raising=False)
    with pytest.raises(SettingError) as err:
        get_setting("events_landing_bucket")
    assert "events_landing_bucket" in str(err.value)
    assert "AIRFLOW_VAR_EVENTS_LANDING_BUCKET" in str(err.value)


def test_setting_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_EVENTS_LANDING_BUCKET", "from-env")
    assert get_setting("events_landing_bucket") == "from-env"


def test_optional_setting_falls_back_to_default_and_casts(monkeypatch) -> None:
    setting = register(Setting("events_test_threshold", 0.5, "a test threshold"))
    try:
        monkeypatch.delenv("AIRFLOW_VAR_EVENTS_TEST_THRESHOLD", raising=False)
        assert get_setting(setting.name) == 0.5
        monkeypatch.setenv("AIRFLOW_VAR_EVENTS_TEST_THRESHOLD", "0.9")
        assert get_setting(setting.name) == 0.9
        monkeypatch.setenv("AIRFLOW_VAR_EVENTS_TEST_THRESHOLD", "high")
        with pytest.raises(SettingError, match="events_test_threshold"):
            get_setting(setting.name)
    finally:
        SETTINGS.pop(setting.name)
