"""Pure parts of the pixel management client: answers, Retry-After, the connection, backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from events_pipeline.attribution import pixel_management as pm
from events_pipeline.common.errors import SettingError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "kind", "client_id", "detail"),
    [
        (b'{"client_id": "acme"}', pm.FOUND, "acme", ""),
        (b'{"client_id": "acme-eu_2", "domain": "acme.com", "x": 1}', pm.FOUND, "acme-eu_2", ""),
        (b"<html>oops</html>", pm.MALFORMED, None, "body is not JSON"),
        (b"", pm.MALFORMED, None, "body is not JSON"),
        (b'["acme"]', pm.MALFORMED, None, "not a JSON object"),
        (b'{"client": "acme"}', pm.MALFORMED, None, "no string client_id"),
        (b'{"client_id": null}', pm.MALFORMED, None, "no string client_id"),
        (b'{"client_id": 42}', pm.MALFORMED, None, "no string client_id"),
        (b'{"client_id": ""}', pm.MALFORMED, None, "no string client_id"),
        (b'{"client_id": "ACME"}', pm.MALFORMED, "ACME", "is not a valid client id"),
        (b'{"client_id": "../acme"}', pm.MALFORMED, "../acme", "is not a valid client id"),
    ],
)
def test_parse_body(body, kind, client_id, detail):
    answer = pm.parse_body("shop.acme.com", body)
    assert (answer.site, answer.kind, answer.client_id) == ("shop.acme.com", kind, client_id)
    assert detail in answer.detail


def test_a_long_malformed_body_is_cut_to_one_line():
    answer = pm.parse_body("x.example", b"line one\n" + b"y" * 1000)
    assert answer.kind == pm.MALFORMED
    assert "\n" not in answer.detail and len(answer.detail) < 260


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("Fri, 27 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 11:59:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds(value, seconds):
    assert pm.retry_after_seconds(value, NOW) == seconds


def _conn(**kwargs):
    from airflow.sdk import Connection

    extra = kwargs.pop("extra", None)
    return Connection(
        conn_id="pixel_management", conn_type="http", extra=json.dumps(extra) if extra else None, **kwargs
    )


def test_connection_gives_url_and_headers():
    config = pm.config_from_connection(
        _conn(
            host="pixel.internal", port=8443, schema="https", password="tok", extra={"headers": {"X-K": "v"}}
        )
    )
    assert config.base_url == "https://pixel.internal:8443"
    assert config.headers == {"Accept": "application/json", "X-K": "v", "Authorization": "Bearer tok"}
    assert config.url_for("shop.acme.com") == "https://pixel.internal:8443/api/v1/config/domain/shop.acme.com"
    assert config.url_for("a/b c") == "https://pixel.internal:8443/api/v1/config/domain/a%2Fb%20c"
    assert "tok" not in repr(config)


@pytest.mark.parametrize(
    ("host", "port", "schema", "base"),
    [
        ("pixel.internal", None, None, "http://pixel.internal"),
        ("pixel.internal", 80, "", "http://pixel.internal:80"),
        ("https://pixel.internal/", None, None, "https://pixel.internal"),
        ("https://pixel.internal:9000/base", 1234, None, "https://pixel.internal:9000/base"),
        ("http://pixel.internal/base", 8080, None, "http://pixel.internal:8080/base"),
        ("pixel.internal/prefix", 8080, "http", "http://pixel.internal:8080/prefix"),
    ],
)
def test_connection_base_urls(host, port, schema, base):
    assert pm.config_from_connection(_conn(host=host, port=port, schema=schema)).base_url == base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": ""}, "has no host"),
        ({"host": "pixel.internal", "schema": "ftp"}, "'ftp'"),
        ({"host": "pixel.internal", "extra": {"headers": ["X-K"]}}, "must be an object of strings"),
        ({"host": "pixel.internal", "extra": {"headers": {"X-K": 1}}}, "must be an object of strings"),
    ],
)
def test_bad_connection_names_it(kwargs, message):
    with pytest.raises(SettingError, match=f"'pixel_management'.*{message}"):
        pm.config_from_connection(_conn(**kwargs))


def test_backoff_doubles_with_jitter_and_a_cap():
    policy = pm.RetryPolicy(backoff_s=1.0, max_backoff_s=5.0)
    for retry, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)):
        for _ in range(20):
            assert base * 0.5 <= policy.backoff(retry) <= base
