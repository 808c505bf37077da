"""Realistic synthetic tracking events, for the local demo, tests and benchmarks.

Events look like what tracking.js sends: several hundred bytes of JSON with
nested properties, real-looking user agents, IPv4 and IPv6 addresses, sessions
and visitors that repeat, a mix of event types and sites.

The landing files of ``make run`` (:func:`history_files`, :func:`current_files`)
are the same bytes for the same hour (seeded by the hour, gzip without a
timestamp), so a restart within the hour re-creates identical objects with
identical ETags, which ingest never loads twice. Their traffic mix
(:data:`DEMO_TRAFFIC`) keeps the unattributed share at 4 %: below the 5 % that
``check_attribution_rate`` allows, even before ``initech.io`` is resolved by the
pixel management service.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.39 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.51",
)
EVENT_TYPES = ("pageview", "pageview", "pageview", "click", "scroll", "form_focus", "form_submit", "custom")
PATHS = ("/", "/products", "/products/shoes/running", "/cart", "/checkout", "/blog/2026/11/launch", "/search")
REFERRERS = ("https://www.google.com/", "https://news.ycombinator.com/", "", "https://t.co/abc")


@dataclass(frozen=True)
class DemoClient:
    """A demo client with its domains.

    :param client_id: the client's id.
    :param name: display name.
    :param domains: domains mapped to it in ``client_domains``.
    :param privacy_level: ``standard`` or ``gdpr``.
    """

    client_id: str
    name: str
    domains: tuple[str, ...]
    privacy_level: str = "standard"


DEMO_CLIENTS = (
    DemoClient("acme", "Acme Corp", ("acme.com",)),
    DemoClient("globex", "Globex GmbH", ("globex.de", "globex-shop.eu"), "gdpr"),
    DemoClient("initech", "Initech", ("initech.io",)),
)
#: Hosts events come from: sub-domains of demo clients and one unknown site.
DEMO_HOSTS = (
    "www.acme.com",
    "shop.acme.com",
    "globex.de",
    "blog.globex-shop.eu",
    "app.initech.io",
    "unknown.example.org",
)


def random_ip(rng: random.Random) -> str:
    """Return an IPv4 (80 %) or IPv6 (20 %) address literal."""
    if rng.random() < 0.8:
        return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)]
    return "2001:db8:" + ":".join(groups)


def make_event(rng: random.Random, when: datetime, hosts: Sequence[str] = DEMO_HOSTS) -> dict[str, Any]:
    """Return one realistic event as a dict (about 500-700 bytes of JSON).

    :param rng: random source (seed it for reproducible data).
    :param when: the event's timestamp.
    :param hosts: hosts to pick the page's site from.
    """
    host = rng.choice(hosts)
    path = rng.choice(PATHS)
    visitor = f"v_{rng.randrange(50_000):05d}"
    event_type = rng.choice(EVENT_TYPES)
    url = f"https://{host}{path}?utm_source={rng.choice(('google', 'newsletter', 'direct'))}"
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": event_type,
        "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "site_id": host,
        "session_id": f"s_{visitor}_{rng.randrange(20)}",
        "visitor_id": visitor,
        "url": url,
        "user_agent": rng.choice(USER_AGENTS),
        "ip_address": random_ip(rng),
        "referrer": rng.choice(REFERRERS),
        "screen": {"w": rng.choice((390, 1280, 1440, 1920)), "h": rng.choice((844, 800, 900, 1080))},
        "properties": {
            "title": f"{path.strip('/').replace('/', ' ').title() or 'Home'} | {host}",
            "lang": rng.choice(("en-US", "de-DE", "fr-FR", "ja-JP")),
            "element": {"tag": "button", "id": f"btn-{rng.randrange(40)}"} if event_type == "click" else None,
            "scroll_depth": rng.choice((25, 50, 75, 100)) if event_type == "scroll" else None,
            "cart_value": round(rng.uniform(5, 400), 2) if path == "/cart" else None,
        },
    }


#: The ``events_log`` columns :func:`stored_columns` returns, in its order.
STORED_COLUMNS = (
    "event_id, event_type, session_id, visitor_id, site_id, timestamp, url, path, user_agent, "
    "ip_address, raw_event_data"
)


def stored_columns(event: dict[str, Any]) -> tuple[Any, ...]:
    """Return a generated event as the values of :data:`STORED_COLUMNS` (a COPY row).

    The page path is the URL's path, as ingest stores it; ``raw_event_data`` is the JSON text.

    :param event: an event of :func:`make_event`.
    """
    return (
        event["event_id"],
        event["event_type"],
        event["session_id"],
        event["visitor_id"],
        event["site_id"],
        event["timestamp"],
        event["url"],
        "/" + event["url"].split("?")[0].split("/", 3)[-1],
        event["user_agent"],
        event["ip_address"],
        json.dumps(event),
    )


def iter_events(
    count: int, *, start: datetime | None = None, seed: int = 7, hosts: Sequence[str] = DEMO_HOSTS
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` events spread over the hour starting at ``start``.

    :param count: number of events.
    :param start: first timestamp (default: the start of the current UTC hour).
    :param seed: random seed.
    :param hosts: hosts to draw sites from.
    """
    rng = random.Random(seed)
    base = start or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for i in range(count):
        yield make_event(rng, base + timedelta(milliseconds=int(i * 3_600_000 / max(count, 1))), hosts)


def ndjson_bytes(
    events: Iterator[dict[str, Any]] | Sequence[dict[str, Any]], *, gzip_level: int | None = 6
) -> bytes:
    """Serialize events as NDJSON, gzip-compressed unless ``gzip_level`` is None.

    :param events: the events.
    :param gzip_level: gzip compression level, or None for plain NDJSON.
    """
    body = "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in events).encode(
        "utf-8"
    )
    # mtime=0: the same events give the same bytes (and the same S3 ETag) on every call
    return gzip.compress(body, compresslevel=gzip_level, mtime=0) if gzip_level is not None else body


#: A few lines that break contract §2 (docs/contract.md), each for a different reason (demo and tests).
BAD_LINES = (
    '{"event_type": "pageview", "site_id": "www.acme.com"}',  # no timestamp
    '{"event_type": "", "timestamp": "2026-11-27T10:00:00Z", "site_id": "www.acme.com"}',  # empty type
    '{"event_type": "click", "timestamp": "yesterday", "site_id": "www.acme.com"}',  # bad timestamp
    '{"event_type": "click", "timestamp": "2026-11-27T10:00:00Z", "ip_address": "999.1.1.1"}',  # bad IP
    "this is not json",
)


# --------------------------------------------------------------------------- make run's landing files

#: Share (per cent) of each demo host in ``make run``'s landing files. 1 % come from a
#: site no client owns and 3 % from ``app.initech.io``, which the demo leaves to the
#: pixel management service: at most 4 % unattributed, under the 5 % that
#: ``check_attribution_rate`` tolerates, whether or not that service answers.
DEMO_TRAFFIC: tuple[tuple[str, int], ...] = (
    ("www.acme.com", 30),
    ("shop.acme.com", 18),
    ("globex.de", 28),
    ("blog.globex-shop.eu", 20),
    ("app.initech.io", 3),
    ("unknown.example.org", 1),
)
#: Events per demo batch file; the mixed file carries this many good lines.
DEMO_BATCH_EVENTS = 2_000
DEMO_MIXED_GOOD_LINES = 400
#: Closed hours before the first start that get a landing file of their own (see :func:`history_files`).
DEMO_HISTORY_HOURS = 2
#: Minute of its hour at which a history file counts as delivered (its rows' ``created_at``).
HISTORY_DELIVERY_MINUTE = 55


@dataclass(frozen=True)
class DemoFile:
    """One landing file of the demo.

    :param key: its key in the landing bucket (under ``incoming/``).
    :param body: its bytes (identical for the same hour).
    :param delivered_at: for a history file, the instant its load is dated back to
        (inside a closed hour); ``None`` for a file of the current hour.
    :param events: events in it (good lines).
    :param bad_lines: lines that break the contract (rejected by ingest).
    """

    key: str
    body: bytes = field(repr=False)
    delivered_at: datetime | None = None
    events: int = 0
    bad_lines: int = 0


def traffic_events(count: int, *, start: datetime, span: timedelta, seed: int) -> list[dict[str, Any]]:
    """Return ``count`` events spread over ``[start, start + span)`` in the :data:`DEMO_TRAFFIC` mix.

    Each host gets exactly its share (rounded; the largest host takes the rest),
    in a shuffled order: the mix does not depend on the random seed's luck.

    :param count: number of events.
    :param start: the first event's timestamp.
    :param span: the time the events spread over.
    :param seed: random seed (same seed, same events).
    """
    rng = random.Random(seed)
    hosts = [host for host, share in DEMO_TRAFFIC for _ in range(count * share // 100)]
    hosts += [DEMO_TRAFFIC[0][0]] * (count - len(hosts))
    rng.shuffle(hosts)
    step = span / max(count, 1)
    return [make_event(rng, start + i * step, (host,)) for i, host in enumerate(hosts)]


def _hour_seed(hour: datetime) -> int:
    return int(hour.timestamp()) // 3600


def history_files(now: datetime, hours: int = DEMO_HISTORY_HOURS) -> list[DemoFile]:
    """Landing files for the ``hours`` closed hours before ``now``, each dated back into its hour.

    A file for hour ``X`` holds the events of ``[X - 5 min, X + 55 min)`` and counts
    as delivered at ``X + 55 min`` (:data:`HISTORY_DELIVERY_MINUTE`): loaded then,
    its rows belong to hour ``X``, which the first export runs (catch-up) deliver.

    :param now: the current time (UTC).
    :param hours: how many closed hours.
    """
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    files = []
    for back in range(hours, 0, -1):
        hour = current - timedelta(hours=back)
        delivered = hour + timedelta(minutes=HISTORY_DELIVERY_MINUTE)
        events = traffic_events(
            DEMO_BATCH_EVENTS,
            start=delivered - timedelta(hours=1),
            span=timedelta(hours=1),
            seed=_hour_seed(hour),
        )
        key = f"incoming/collector-1/{hour:%Y/%m/%d/%H}/batch-{hour:%H}55.ndjson.gz"
        files.append(DemoFile(key, ndjson_bytes(events), delivered, len(events)))
    return files


def current_files(now: datetime) -> list[DemoFile]:
    """The landing files of the current hour: one batch, and one file with a few bad lines.

    Both hold events of the hour before; the second has :data:`BAD_LINES` among
    :data:`DEMO_MIXED_GOOD_LINES` good lines (0.3 % of the hour's lines rejected,
    under ``check_rejected_rate``'s 2 %).

    :param now: the current time (UTC).
    """
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    seed = _hour_seed(hour)
    batch = traffic_events(
        DEMO_BATCH_EVENTS, start=hour - timedelta(hours=1), span=timedelta(hours=1), seed=seed
    )
    good = traffic_events(
        DEMO_MIXED_GOOD_LINES, start=hour - timedelta(hours=1), span=timedelta(hours=1), seed=seed + 1
    )
    half = len(good) // 2
    lines = [json.dumps(e) for e in good[:half]] + list(BAD_LINES) + [json.dumps(e) for e in good[half:]]
    return [
        DemoFile(
            f"incoming/collector-1/{hour:%Y/%m/%d/%H}/batch-{hour:%H}00.ndjson.gz",
            ndjson_bytes(batch),
            None,
            len(batch),
        ),
        DemoFile(
            f"incoming/collector-2/{hour:%Y/%m/%d}/mixed-{hour:%H}.ndjson",
            ("\n".join(lines) + "\n").encode(),
            None,
            len(good),
            len(BAD_LINES),
        ),
    ]
