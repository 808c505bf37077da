"""Strings survive ingest byte for byte (COPY/CSV/JSON specials, scripts, emoji); NUL becomes U+FFFD."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import task_states
from tests.integration.ingest.conftest import events, ndjson, put

SPECIALS = [
    "tab\there",
    "back\\slash",
    "\\N",
    "\\",
    "quote \" and 'single'",
    "new\nline",
    "carriage\r\nreturn",
    "comma,semi;pipe|",
    "emoji 🎉👩‍💻",
    "日本語のテキスト",
    "العربية",
    "Ελληνικά",
    "\\u0000 literally",
    "nul\x00inside",
    "\x01\x1f control",
    "\u2028\u2029 separators",
    "",
    " ",
]
_alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",))
_text = st.one_of(st.sampled_from(SPECIALS), st.text(_alphabet, max_size=30))


def _expected(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_expected(k): _expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expected(v) for v in value]
    return value


def _event(n: int, text: dict[str, str], props: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_type": (text["event_type"] or "x")[:50],
        "timestamp": "2026-11-27T12:00:00.123+01:00",
        "site_id": "acme.com",
        "session_id": text["session_id"][:100],
        "visitor_id": text["visitor_id"][:100],
        "url": "https://acme.com/" + text["url"],
        "path": text["path"][:500],
        "user_agent": text["user_agent"],
        "n": n,
        "properties": props,
    }


_fields = st.fixed_dictionaries(
    dict.fromkeys(("event_type", "session_id", "visitor_id", "url", "path", "user_agent"), _text)
)
_props = st.dictionaries(
    _text, st.one_of(_text, st.integers(-(2**53), 2**53), st.lists(_text, max_size=3)), max_size=4
)


def _load_and_compare(s3: Any, db: Any, run_dag: Any, sent: list[dict[str, Any]], name: str) -> None:
    db.execute("TRUNCATE events_log, ingest_counts, replayed_lines, landing_files")
    put(s3, f"rt/{name}.ndjson.gz", ndjson(sent))
    dr = run_dag("events_ingest")
    assert dr.state == "success", task_states(dr)
    got = {r["raw_event_data"]["n"]: r for r in events(db)}
    assert len(got) == len(sent)
    for event in sent:
        row = got[event["n"]]
        want = _expected(event)
        assert row["raw_event_data"] == want
        for col in ("event_type", "session_id", "visitor_id", "url", "path", "user_agent"):
            assert row[col] == want[col], col


def test_special_strings_round_trip(ingest_env: Any, db: Any, run_dag: Any) -> None:
    sent = []
    for n, s in enumerate(SPECIALS):
        sent.append(
            _event(
                n,
                dict.fromkeys(("session_id", "visitor_id", "url", "path", "user_agent"), s)
                | {"event_type": s or "e"},
                {s: s, "list": [s, s]},
            )
        )
    _load_and_compare(ingest_env, db, run_dag, sent, "specials")


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(st.tuples(_fields, _props), min_size=1, max_size=6))
def test_generated_events_round_trip(ingest_env: Any, db: Any, run_dag: Any, batch: list[Any]) -> None:
    sent = [_event(n, fields, props) for n, (fields, props) in enumerate(batch)]
    _load_and_compare(ingest_env, db, run_dag, sent, f"gen-{abs(hash(repr(sent)))}")
