"""Benchmark: a whole month of the pipeline at 1/10 of the design volume, stage by stage.

The design target is more than 200M events a month over many clients (contract §1).
This script lives through one month at 1/10 of it (``--scale 1``: 20M events over
``--days`` 30 and ``--clients`` 120) on a throw-away embedded PostgreSQL and a local
moto S3 server, calling the real pipeline code for every stage, in simulated time:

- **generate**: realistic events (the shape of ``devtools/demo_data.py``: ~600 bytes of
  JSON with nested properties, real user agents, IPv4 and IPv6) from one rendered
  template set per client, the varying fields (event id, timestamp, visitor, session,
  IP) spliced in with Arrow. Client sizes follow a long tail (a few big, most small),
  every 8th client is GDPR, ~1 % of the events come from sites no client owns, traffic
  follows a diurnal curve with quieter weekends. One gzip NDJSON landing file per
  5 minutes per collector shard (``--shards``). Timed apart ("generate", "deliver").
- **ingest**: every simulated hour, the hour's files are claimed
  (``ingest.pipeline.claim_available``, as ``claim_files`` does) and split into two
  batches (``make_batches``) that two loader processes load at once with
  ``ingest.pipeline.load_claims``, as two mapped ``load_batch`` tasks do.
- **export**: after every hour, ``export.groups.plan`` packs every active client into
  groups and two worker processes run them (``export.groups.run_group``, which calls
  ``export.client_hour.export_client_hour`` per client), as the mapped ``export_group``
  tasks do; without ``export/groups.py`` each client's ``export_client_hour`` is called.
  With ``--export-every N`` the days between the first and the last export only every
  N-th hour (each run takes the rows of its N hours, as a catch-up does: the same rows,
  fewer client-hours); the first and last days still export the compared hour on its own.
- **billing**: every day at 00:10, ``billing.daily_rollup.compute_days`` for the day that
  ended and its settle days, as ``events_billing`` does.
- **maintenance**: every day at 03:05, the steps of ``events_maintenance`` in order
  (``ensure_partitions_around``, ``run_archival``, ``run_reattribution``,
  ``run_gdpr_sweep``, ``run_retention``), plus one final run the morning after the
  month. Most clients keep events ``--retention-days`` (7) days, every 10th client twice
  as long, so retention rebuilds and drops real partitions during the month; archived
  rows go ``--archived-keep-days`` (7) after ``--archive-after-days`` (30), so with a
  shorter archival a partition is dropped once nothing in it is needed. The GDPR sweep
  runs in every maintenance, as in production (``--sweep-edges-only``: the first and the
  final one only); after its first full pass it reads only the rows created since the
  previous sweep, and this month stores no raw IP it would have to treat.

**Simulated time.** ``events_log.created_at``, ``processed_at``, the registry and billing
days all come from PostgreSQL's clock, so the server runs under libfaketime with an
offset this script moves step by step (``H:55`` for the loads of hour ``H``, ``H+1:02``
for its export, ``00:10`` billing, ``03:05`` maintenance); the Python functions that take
a ``now`` get the simulated time. Only PostgreSQL's wall clock is shifted (its monotonic
clock is not), so timeouts behave; a ``CHECKPOINT`` runs before every hour's export, as a
``checkpoint_timeout`` under an hour would cause (``checkpoint_timeout`` itself is set to
1 day so the jumping clock does not trigger extra ones). Needs Debian's ``libfaketime``
(installed with apt-get when missing and running as root, or give its path in
``BENCH_LIBFAKETIME``).

Per stage it reports wall time, events/s, CPU (workers, all PostgreSQL processes, this
process: the S3 server, the claim and the export plan), peak memory (``VmHWM`` of the
worker processes, reset per command; PSS of all PostgreSQL processes, sampled each
second), WAL generated (``pg_current_wal_lsn`` differences) and the size of
``events_log`` (heap + TOAST, indexes) day by day; one hourly export and one daily
maintenance at the END of the month against the START; and "1/1 on paper": what the
full design volume would need, from the measured per-core rates.

Housekeeping (untimed, outside every stage): a day's landing objects under
``processed/`` and its exported objects are deleted from the local S3 server after the
day (the landing expiry and the clients' own lifecycle in production), so the in-memory
S3 server stays small; nothing in the database is touched.

Usage::

    PYTHONPATH=plugins:. .venv/bin/python benchmarks/bench_month.py [--scale 1.0] [--days 30]
        [--clients 120] [--shards 2] [--export-every 1] [--out benchmarks/results/month.json]

The defaults (20M events, 120 clients, an export every hour: 86,400 client-hours) take
hours on 2 cores: an export costs ~0.15 s per client-hour whatever its rows. The variant
that fits in about 30 minutes is ``--scale 0.25 --export-every 24``; the report then
extrapolates the defaults from its fits (labelled as such).

Prints a table and writes ``benchmarks/results/month.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

LANDING_BUCKET = "bench-landing"
BACKUP_BUCKET = "bench-backup"
EXPORT_PREFIX = "events"
SECRET = "bench-month-secret-bench-month-secret"  # noqa: S105 - a throw-away key for the benchmark
#: Events of the whole design month (contract §1) and this benchmark's share of it.
DESIGN_MONTH_EVENTS = 200_000_000
MONTH_EVENTS = DESIGN_MONTH_EVENTS // 10
MONTH_DAYS = 30
#: Rendered templates per client (the fields that do not vary per event).
TEMPLATES_PER_CLIENT = 24
#: IP addresses per client (a visitor keeps one).
IPS_PER_CLIENT = 2048
SLOT_MINUTES = 5
#: Every n-th client is GDPR; every n-th client keeps its events twice as long.
GDPR_EVERY = 8
LONG_RETENTION_EVERY = 10
#: Share of events from sites that no client owns.
UNKNOWN_SHARE = 0.01
#: The defaults the report extrapolates to (``--clients``, ``--shards``), whatever this run used.
DEFAULT_CLIENTS = 120
DEFAULT_SHARDS = 2
#: A burst the design names ("peaks of several thousand events per second").
DESIGN_PEAK_EVENTS_PER_S = 5_000
FAKETIME_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
FAKETIME_APT_PACKAGE = "libfaketime"


# --------------------------------------------------------------------------- the month's shape


def diurnal_weights() -> list[float]:
    """Relative traffic of each UTC hour (mean 1): quiet at night, a peak in the evening."""
    raw = [1.0 + 0.6 * math.sin(2 * math.pi * (h - 13) / 24) for h in range(24)]
    mean = sum(raw) / 24
    return [w / mean for w in raw]


def day_weight(day: date) -> float:
    """Relative traffic of a day: weekends are quieter."""
    return 0.8 if day.weekday() >= 5 else 1.0


def client_weights(count: int) -> list[float]:
    """Long-tail share of each client (Zipf-like, sums to 1): a few big ones, most small."""
    raw = [1.0 / (rank + 1) ** 1.07 for rank in range(count)]
    total = sum(raw)
    return [w / total for w in raw]


@dataclass(frozen=True)
class BenchClient:
    """One client of the benchmark.

    :param client_id: its id.
    :param domain: its one domain (events come from ``www.``/``shop.``/bare hosts of it).
    :param weight: its share of the attributed events.
    :param privacy_level: ``standard`` or ``gdpr``.
    :param retention_days: days its exported events are kept.
    """

    client_id: str
    domain: str
    weight: float
    privacy_level: str
    retention_days: int


def make_clients(count: int, retention_days: int) -> list[BenchClient]:
    """The benchmark's clients, biggest first.

    :param count: how many.
    :param retention_days: the common retention; every :data:`LONG_RETENTION_EVERY`-th keeps twice as long.
    """
    weights = client_weights(count)
    return [
        BenchClient(
            client_id=f"c{i:04d}",
            domain=f"client{i:04d}.example.com",
            weight=weights[i],
            privacy_level="gdpr" if i % GDPR_EVERY == 1 else "standard",
            retention_days=retention_days * 2 if i % LONG_RETENTION_EVERY == 9 else retention_days,
        )
        for i in range(count)
    ]


# --------------------------------------------------------------------------- fast generation


#: The fixed-width head of every line; the varying fields go into the gaps (widths below).
HEAD_PARTS = ('{"event_id":"', '","timestamp":"', '","session_id":"', '","visitor_id":"', '","ip_address":"')
#: Widths of the event id, timestamp, session id and visitor id texts.
HEAD_FIELDS = (36, 24, 11, 7)


@dataclass
class Templates:
    """The rendered parts of the events that do not vary, as Arrow arrays.

    A line is the fixed-width head (event id, timestamp, session, visitor: :data:`HEAD_PARTS`),
    then an address of the source's IP pool (``ips``, each ending in ``",``), then one of the
    source's rendered rests (``rest``: event type, site, URL, user agent, referrer, screen,
    nested properties, ``}`` and the newline). Keys come in another order than demo_data's
    dicts (the varying ones first); JSON objects are unordered and ingest keeps the text as is.
    """

    rest: Any
    first: list[int]  # first template index of each source (clients, then the unknown sites)
    ips: Any  # every source's IP pool, concatenated
    mean_bytes: float = 0.0


def _ip_pool(rng: Any, n: int) -> list[str]:
    """``n`` IP literals, 80 % IPv4 and 20 % IPv6 (as ``demo_data.random_ip``)."""
    v4 = rng.random(n) < 0.8
    octets = rng.integers(0, 256, size=(n, 4))
    octets[:, 0] = rng.integers(1, 224, size=n)
    octets[:, 3] = rng.integers(1, 255, size=n)
    groups = rng.integers(0, 0x10000, size=(n, 6))
    return [
        ".".join(map(str, octets[i])) if v4[i] else "2001:db8:" + ":".join(f"{g:x}" for g in groups[i])
        for i in range(n)
    ]


def build_templates(clients: list[BenchClient], seed: int) -> Templates:
    """Render :data:`TEMPLATES_PER_CLIENT` events per client (and for the unknown sites) with demo_data.

    :param clients: the clients.
    :param seed: random seed.
    """
    import random

    import numpy as np
    import pyarrow as pa

    from devtools.demo_data import make_event

    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    sources = [(f"www.{c.domain}", f"shop.{c.domain}", c.domain) for c in clients]
    sources.append(tuple(f"site{i}.unknown-{i}.example.org" for i in range(8)))
    rest: list[str] = []
    first, ips, sizes = [], [], []
    head = sum(map(len, HEAD_PARTS)) + sum(HEAD_FIELDS)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for hosts in sources:
        first.append(len(rest))
        pool = _ip_pool(nprng, IPS_PER_CLIENT)
        ips.extend(f'{ip}",' for ip in pool)
        for _ in range(TEMPLATES_PER_CLIENT):
            event = make_event(rng, when, hosts)
            for key in ("event_id", "timestamp", "session_id", "visitor_id", "ip_address"):
                del event[key]
            text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
            rest.append(text[1:] + "\n")
            sizes.append(head + len(pool[0]) + 2 + len(rest[-1].encode()))
    return Templates(rest=pa.array(rest), first=first, ips=pa.array(ips), mean_bytes=sum(sizes) / len(sizes))


def _fixed_width(data: Any) -> Any:
    """A (n, w) uint8 numpy array as an Arrow string array of n values (no copy of the bytes)."""
    import numpy as np
    import pyarrow as pa

    n, width = data.shape
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


def _uuids(rng: Any, n: int) -> Any:
    """n random version-4 UUIDs as canonical text, a (n, 36) uint8 array."""
    import numpy as np

    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = lut[raw >> 4]
    hexed[:, 1::2] = lut[raw & 15]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for dst, src in ((0, 0), (9, 8), (14, 12), (19, 16), (24, 20)):
        width = {0: 8, 24: 12}.get(dst, 4)
        out[:, dst : dst + width] = hexed[:, src : src + width]
    return out


def _digits(values: Any, width: int) -> Any:
    """Zero-padded decimal digits of non-negative integers, as a (n, width) uint8 array."""
    import numpy as np

    out = np.empty((len(values), width), dtype=np.uint8)
    rest = values.copy()
    for pos in range(width - 1, -1, -1):
        out[:, pos] = 48 + rest % 10
        rest //= 10
    return out


def _timestamps(hour: datetime, ms: Any) -> Any:
    """ISO-8601 UTC texts (``2026-11-01T13:05:09.123Z``) of ``hour`` + ``ms``, a (n, 24) uint8 array."""
    import numpy as np

    prefixes = np.frombuffer(
        "".join(f"{hour + timedelta(seconds=s):%Y-%m-%dT%H:%M:%S}." for s in range(3600)).encode(),
        dtype=np.uint8,
    ).reshape(3600, 20)
    out = np.empty((len(ms), 24), dtype=np.uint8)
    out[:, :20] = prefixes[ms // 1000]
    out[:, 20:23] = _digits(ms % 1000, 3)
    out[:, 23] = ord("Z")
    return out


#: Landing keys: ``incoming/YYYY/MM/DD/HHMM-c<shard>.ndjson.gz`` (key order is time order).
INCOMING = "incoming/"


def hour_prefix(key: str) -> str:
    """The ``incoming/YYYY/MM/DD/HH`` part of a landing key."""
    return key[: len(INCOMING) + len("YYYY/MM/DD/HH")]


@dataclass
class LandingFile:
    """One generated landing file.

    :param key: its key under ``incoming/``.
    :param body: gzip NDJSON bytes.
    :param events: events in it.
    :param raw_bytes: uncompressed size.
    """

    key: str
    body: bytes = field(repr=False)
    events: int
    raw_bytes: int


def generate_hour(
    templates: Templates,
    weights: Any,
    hour: datetime,
    count: int,
    shards: int,
    seed: int,
    gzip_level: int = 1,
) -> list[LandingFile]:
    """The landing files of one hour: one per 5-minute slot and collector shard, events in time order.

    :param templates: the rendered templates.
    :param weights: probability of each source (clients, then the unknown sites).
    :param hour: the hour's start (UTC).
    :param count: events in the hour.
    :param shards: collector shards (files per slot).
    :param seed: random seed of the hour.
    :param gzip_level: gzip level of the files.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    source = rng.choice(len(weights), size=count, p=weights)
    ms = rng.integers(0, 3_600_000, size=count)
    shard = rng.integers(0, shards, size=count)
    slot = ms // (SLOT_MINUTES * 60_000)
    order = np.lexsort((ms, shard, slot))
    source, ms, shard, slot = source[order], ms[order], shard[order], slot[order]
    template = np.asarray(templates.first)[source] + rng.integers(0, TEMPLATES_PER_CLIENT, size=count)
    visitor = rng.integers(0, 100_000, size=count)
    head = np.empty((count, sum(map(len, HEAD_PARTS)) + sum(HEAD_FIELDS)), dtype=np.uint8)
    visitor_text = np.empty((count, 7), dtype=np.uint8)
    visitor_text[:, :2] = np.frombuffer(b"v_", dtype=np.uint8)
    visitor_text[:, 2:] = _digits(visitor, 5)
    session_text = np.empty((count, 11), dtype=np.uint8)
    session_text[:, :2] = np.frombuffer(b"s_", dtype=np.uint8)
    session_text[:, 2:9] = visitor_text
    session_text[:, 9] = ord("_")
    session_text[:, 10] = 48 + rng.integers(0, 10, size=count)
    at = 0
    for part, value in zip(
        HEAD_PARTS, (_uuids(rng, count), _timestamps(hour, ms), session_text, visitor_text, None), strict=True
    ):
        head[:, at : at + len(part)] = np.frombuffer(part.encode(), dtype=np.uint8)
        at += len(part)
        if value is not None:
            head[:, at : at + value.shape[1]] = value
            at += value.shape[1]
    ip_index = (source * IPS_PER_CLIENT + visitor % IPS_PER_CLIENT).astype(np.int32)
    lines = pc.binary_join_element_wise(
        _fixed_width(head),
        templates.ips.take(pa.array(ip_index)),
        templates.rest.take(pa.array(template.astype(np.int32))),
        "",
    )
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=count + 1, offset=lines.offset * 4)
    data = memoryview(lines.buffers()[2])
    bounds = np.searchsorted(slot * shards + shard, np.arange(60 // SLOT_MINUTES * shards + 1))
    files = []
    for i in range(len(bounds) - 1):
        start, end = int(bounds[i]), int(bounds[i + 1])
        if start == end:
            continue
        body = data[offsets[start] : offsets[end]]
        packer = zlib.compressobj(gzip_level, zlib.DEFLATED, 31)
        minute = (i // shards) * SLOT_MINUTES
        key = f"{INCOMING}{hour:%Y/%m/%d/%H}{minute:02d}-c{i % shards + 1}.ndjson.gz"
        files.append(LandingFile(key, packer.compress(body) + packer.flush(), end - start, len(body)))
    return files


def hour_counts(days: list[date], per_day: float, seed: int) -> dict[datetime, int]:
    """Events per simulated hour: the diurnal curve, quieter weekends, +-5 % noise per hour.

    :param days: the month's days.
    :param per_day: mean events per day.
    :param seed: random seed.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    curve = diurnal_weights()
    week = sum(day_weight(d) for d in days) / len(days)
    out = {}
    for day in days:
        for h in range(24):
            mean = per_day / 24 * curve[h] * day_weight(day) / week * rng.uniform(0.95, 1.05)
            out[datetime(day.year, day.month, day.day, h, tzinfo=UTC)] = max(1, round(mean))
    return out


# --------------------------------------------------------------------------- measuring


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of PostgreSQL so far: the postmaster, its live children and the reaped ones."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _proc_stat(postmaster)
    if fields is None:
        return 0.0
    total = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    for child in _children(postmaster):
        if (f := _proc_stat(child)) is not None:
            total += int(f[11]) + int(f[12])
    return total / tick


def postgres_pss_mb(postmaster: int) -> float:
    """Proportional set size of all PostgreSQL processes (shared buffers counted once), MB."""
    total = 0
    for pid in (postmaster, *_children(postmaster)):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total / 1024


def self_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def peak_rss_mb() -> float:
    """VmHWM of this process in MB (reset by :func:`reset_peak_rss`)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@dataclass
class Stage:
    """What one stage cost over the month (sums over its runs, maxima of the peaks)."""

    name: str
    runs: int = 0
    seconds: float = 0.0
    events: int = 0
    worker_cpu: float = 0.0
    postgres_cpu: float = 0.0
    s3_cpu: float = 0.0
    wal_bytes: int = 0
    worker_peak_mb: float = 0.0
    postgres_pss_peak_mb: float = 0.0
    busy_jiffies: int = 0
    total_jiffies: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON view with derived rates."""
        cpu = self.worker_cpu + self.postgres_cpu + self.s3_cpu
        out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        out["events_per_second"] = round(self.events / self.seconds) if self.seconds else None
        out["cpu_seconds"] = round(cpu, 1)
        out["events_per_cpu_second"] = round(self.events / cpu) if cpu else None
        out["machine_busy"] = round(self.busy_jiffies / self.total_jiffies, 2) if self.total_jiffies else None
        return out


class Meter:
    """Times stages: wall, CPU of workers / PostgreSQL / this process, WAL, peak memory of PostgreSQL."""

    def __init__(self, conn: Any, postmaster: int) -> None:
        self.conn = conn
        self.postmaster = postmaster
        self.stages: dict[str, Stage] = {}
        self._current: Stage | None = None
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="pg-pss", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            stage = self._current
            if stage is not None:
                stage.postgres_pss_peak_mb = max(stage.postgres_pss_peak_mb, postgres_pss_mb(self.postmaster))

    def wal_lsn(self) -> int:
        """The current WAL position in bytes."""
        return int(self.conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])

    @contextlib.contextmanager
    def stage(self, name: str, events: int = 0) -> Iterator[dict[str, Any]]:
        """Measure the block as one run of stage ``name``; the block may add worker CPU and peak memory."""
        stage = self.stages.setdefault(name, Stage(name))
        info: dict[str, Any] = {"worker_cpu": 0.0, "worker_peak_mb": 0.0, "events": events}
        wal0, pg0, me0 = self.wal_lsn(), postgres_cpu_seconds(self.postmaster), self_cpu_seconds()
        busy0, total0 = machine_jiffies()
        self._current = stage
        t0 = time.perf_counter()
        try:
            yield info
        finally:
            seconds = time.perf_counter() - t0
            self._current = None
            busy1, total1 = machine_jiffies()
            stage.runs += 1
            stage.seconds += seconds
            stage.events += int(info["events"])
            stage.worker_cpu += info["worker_cpu"]
            stage.postgres_cpu += postgres_cpu_seconds(self.postmaster) - pg0
            stage.s3_cpu += self_cpu_seconds() - me0
            stage.wal_bytes += self.wal_lsn() - wal0
            stage.worker_peak_mb = max(stage.worker_peak_mb, info["worker_peak_mb"])
            stage.busy_jiffies += busy1 - busy0
            stage.total_jiffies += total1 - total0
            info["seconds"] = seconds

    def close(self) -> None:
        """Stop the memory sampler."""
        self._stop.set()


# --------------------------------------------------------------------------- simulated time


class SimClock:
    """PostgreSQL's wall clock under libfaketime: an offset from the real time, in a file it re-reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now: datetime | None = None

    def set(self, when: datetime) -> None:
        """Move the clock so that it reads ``when`` now (it then runs on at real speed)."""
        offset = round((when - datetime.now(UTC)).total_seconds())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+d}s\n")
        tmp.chmod(0o644)
        tmp.replace(self.path)
        self.now = when


def find_libfaketime(log_dir: Path) -> str:
    """Return the path of libfaketime, installing Debian's package when missing and root.

    :param log_dir: where apt-get's output goes.
    :raises SystemExit: not found and not installable, saying what to do.
    """
    wanted = os.environ.get("BENCH_LIBFAKETIME")
    if wanted:
        if Path(wanted).is_file():
            return wanted
        raise SystemExit(f"BENCH_LIBFAKETIME={wanted} does not exist")
    found = next((p for p in FAKETIME_CANDIDATES if Path(p).is_file()), None)
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt_get:
        raise SystemExit(
            "bench_month needs libfaketime (PostgreSQL's clock is simulated): install Debian's "
            f"{FAKETIME_APT_PACKAGE} (`sudo apt-get install {FAKETIME_APT_PACKAGE}`) or set "
            "BENCH_LIBFAKETIME to the path of libfaketime.so.1"
        )
    log_path = log_dir / "apt-libfaketime.log"
    print(f"installing Debian's {FAKETIME_APT_PACKAGE} with apt-get (log: {log_path})", flush=True)
    with log_path.open("w") as out:
        for cmd in ([apt_get, "update", "-q"], [apt_get, "install", "-y", "-q", FAKETIME_APT_PACKAGE]):
            subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=600)
    found = next((p for p in FAKETIME_CANDIDATES if Path(p).is_file()), None)
    if not found:
        raise SystemExit(f"apt-get did not install {FAKETIME_APT_PACKAGE}; see {log_path}")
    return found


# --------------------------------------------------------------------------- worker processes


def _worker_loop(pipe: Any, env: dict[str, str]) -> None:
    """A worker process (a task slot): loads, exports, bills and maintains on command.

    Replies to every command with its result plus ``cpu`` (this process's CPU seconds)
    and ``peak_mb`` (its VmHWM during the command).
    """
    os.environ.update(env)
    import psycopg

    from devtools import devstack
    from events_pipeline.ingest import pipeline
    from events_pipeline.ingest.landing import Claim

    pipeline.prepare_loader_process()  # as load_batch does (imports pyarrow, gc.freeze)
    s3 = devstack.s3_client(env["BENCH_S3_ENDPOINT"])
    s3.list_buckets()
    conn = psycopg.connect(env["BENCH_DSN"], autocommit=True)
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        "load": lambda claims: _load(pipeline, Claim, conn, s3, claims),
        "export": _export,
        "billing": _billing,
        "maintenance": _maintenance,
    }
    profile_dir = env.get("BENCH_PROFILE_DIR")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall
    pipe.send({"ready": True})
    while True:
        command, kwargs = pipe.recv()
        if command == "stop":
            break
        reset_peak_rss()
        cpu0, t0 = self_cpu_seconds(), time.perf_counter()
        try:
            if profiler is not None and command in ("export", "load"):
                profiler.enable()
            result = handlers[command](**kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
            import traceback

            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        finally:
            if profiler is not None:
                profiler.disable()
        result.update(cpu=self_cpu_seconds() - cpu0, peak_mb=peak_rss_mb(), seconds=time.perf_counter() - t0)
        pipe.send(result)
    conn.close()
    if profiler is not None and profile_dir:
        profiler.dump_stats(str(Path(profile_dir) / f"worker-{os.getpid()}.pstats"))


def _load(pipeline: Any, claim_type: Any, conn: Any, s3: Any, claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Load a batch of claimed files as one mapped ``load_batch`` task does."""
    results = pipeline.load_claims(
        conn,
        s3,
        LANDING_BUCKET,
        [claim_type.from_dict(c) for c in claims],
        lease_minutes=30,
        max_attempts=5,
        secret=lambda: SECRET,
    )
    failed = [f"{r.key}: {r.detail}" for r in results if r.outcome not in ("loaded", "moved_only")]
    if failed:
        raise RuntimeError("files not loaded: " + "; ".join(failed[:5]))
    return {"rows": sum(r.rows_loaded for r in results), "files": len(results)}


def _export(groups: list[dict[str, Any]] | None, clients: list[str] | None, hour: str, run_id: str) -> dict:
    """Export the given groups (``export/groups.py``), or else each client with ``export_client_hour``."""
    start = datetime.fromisoformat(hour)
    rows = client_hours = 0
    if groups is not None:
        from events_pipeline.export import groups as export_groups

        for group in groups:
            outcome = export_groups.raise_for_failures(export_groups.run_group(group, run_id=run_id))
            for per_hour in outcome["clients"].values():
                for summary in per_hour.values():
                    rows += int(summary.get("rows") or 0)
                    client_hours += 1
    else:
        from events_pipeline.export.client_hour import export_client_hour

        for client_id in clients or []:
            summary = export_client_hour(client_id, start, start + timedelta(hours=1), run_id=run_id)
            rows += int(summary.get("rows") or 0)
            client_hours += 1
    return {"rows": rows, "client_hours": client_hours}


def _billing(first: str, last: str, run_id: str) -> dict[str, Any]:
    """Bill the days as ``events_billing`` does (the day that ended plus its settle days)."""
    from events_pipeline.billing.daily_rollup import compute_days
    from events_pipeline.common.db import connect

    with connect() as conn:
        days = compute_days(conn, date.fromisoformat(first), date.fromisoformat(last), run_id=run_id)
    return {"days": len(days)}


def _maintenance(
    now: str, run_id: str, archive_after_days: int, archived_keep_days: int, sweep: bool
) -> dict[str, Any]:
    """The steps of ``events_maintenance`` in order, each with its own connection as each task has."""
    from events_pipeline.common.db import connect
    from events_pipeline.common.partitions import ensure_partitions_around
    from events_pipeline.maintenance.archival import run_archival
    from events_pipeline.maintenance.reattribution import run_reattribution
    from events_pipeline.maintenance.retention import run_retention
    from events_pipeline.privacy.sweep import sweep_gdpr

    when = datetime.fromisoformat(now)
    steps: dict[str, float] = {}
    details: dict[str, Any] = {}

    def step(name: str, fn: Callable[[Any], Any]) -> None:
        t0 = time.perf_counter()
        with connect() as conn:
            details[name] = fn(conn)
        steps[name] = round(time.perf_counter() - t0, 3)

    step("partitions", lambda c: ensure_partitions_around(c, when))
    step("archival", lambda c: run_archival(c, when, after_days=archive_after_days, run_id=run_id))
    step("reattribution", lambda c: run_reattribution(c, SECRET, run_id=run_id))
    if sweep:
        step("gdpr_sweep", lambda c: sweep_gdpr(c, SECRET, run_id=run_id).as_dict())
    step(
        "retention",
        lambda c: run_retention(
            c,
            when,
            run_id=run_id,
            archive_after_days=archive_after_days,
            archived_keep_days=archived_keep_days,
        ).as_dict(),
    )
    retention = details["retention"]
    swept = details.get("gdpr_sweep") or {}
    return {
        "steps": steps,
        "sweep_partitions_read": len(swept.get("partitions", {})),
        "sweep_full_passes": len(swept.get("full_pass", {})),
        "sweep_rows_treated": sum(swept.get("per_client", {}).values()),
        "dropped": [p["partition"] for p in retention["partitions"] if p["mode"] == "drop"],
        "archived": details["archival"]["archived"],
        "retention_deleted": retention["deleted"],
        "retention_modes": {p["partition"]: p["mode"] for p in retention["partitions"]},
        "deferred": retention["deferred"],
    }


class Workers:
    """Two worker processes, as two task slots of the executor."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_loop, args=(child, env), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.recv().get("ready"):
                raise RuntimeError("a worker did not start")

    def run(self, jobs: list[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send each ``(worker, command, kwargs)`` at once, wait for all; raise on a worker's error."""
        for worker, command, kwargs in jobs:
            self.pipes[worker].send((command, kwargs))
        out = [self.pipes[worker].recv() for worker, _, _ in jobs]
        for r in out:
            if "error" in r:
                raise RuntimeError(f"worker failed: {r['error']}\n{r.get('traceback', '')}")
        return out

    def stop(self) -> None:
        """Stop the workers."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send(("stop", {}))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def _account(info: dict[str, Any], replies: list[dict[str, Any]]) -> None:
    info["worker_cpu"] += sum(r["cpu"] for r in replies)
    info["worker_peak_mb"] = max([info["worker_peak_mb"], *(r["peak_mb"] for r in replies)])


# --------------------------------------------------------------------------- the month


@dataclass
class Month:
    """The running benchmark: services, clock, workers, meter and the records of every run."""

    args: argparse.Namespace
    clients: list[BenchClient]
    clock: SimClock
    conn: Any
    s3: Any
    workers: Workers
    meter: Meter
    templates: Templates
    weights: Any
    has_groups: bool
    exports: list[dict[str, Any]] = field(default_factory=list)
    ingests: list[dict[str, Any]] = field(default_factory=list)
    maintenances: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    generated_events: int = 0
    generated_raw_bytes: int = 0
    generated_gzip_bytes: int = 0
    landing_files: int = 0
    start_lsn: int = 0

    def generate_day(self, day: date, counts: dict[datetime, int]) -> list[LandingFile]:
        """Generate and deliver (upload to ``incoming/``) the landing files of one day."""
        hours = [h for h in counts if h.date() == day]
        with self.meter.stage("generate") as info, ThreadPoolExecutor(2) as pool:
            batches = list(
                pool.map(
                    lambda h: generate_hour(
                        self.templates, self.weights, h, counts[h], self.args.shards, int(h.timestamp())
                    ),
                    hours,
                )
            )
            files = [f for batch in batches for f in batch]
            info["events"] = sum(f.events for f in files)
        with self.meter.stage("deliver", events=info["events"]), ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda f: self.s3.put_object(Bucket=LANDING_BUCKET, Key=f.key, Body=f.body), files))
        self.generated_events += info["events"]
        self.generated_raw_bytes += sum(f.raw_bytes for f in files)
        self.generated_gzip_bytes += sum(len(f.body) for f in files)
        self.landing_files += len(files)
        return files

    def ingest_hour(self, hour: datetime, files: int) -> int:
        """Claim and load the hour's files at ``H:55`` with two loaders."""
        from events_pipeline.common.partitions import ensure_partitions_around
        from events_pipeline.ingest import pipeline

        self.clock.set(hour + timedelta(minutes=55))
        with self.meter.stage("ingest") as info:
            ensure_partitions_around(self.conn, hour)
            self.conn.autocommit = True
            claims = pipeline.claim_available(
                self.conn,
                self.s3,
                LANDING_BUCKET,
                pipeline.new_token(f"bench-{hour:%Y%m%dT%H}"),
                max_files=files,
                lease_minutes=30,
            )
            batches = pipeline.make_batches(claims, -(-len(claims) // len(self.workers.pipes)))
            replies = self.workers.run(
                [(i, "load", {"claims": [c.as_dict() for c in b]}) for i, b in enumerate(batches)]
            )
            _account(info, replies)
            info["events"] = sum(r["rows"] for r in replies)
        self.ingests.append(
            {
                "hour": hour.isoformat(),
                "events": info["events"],
                "files": len(claims),
                "seconds": info["seconds"],
            }
        )
        return info["events"]

    def export_hour(self, hour: datetime) -> None:
        """Export hour ``H`` at ``H+1:02`` for every active client, as the export DAG does."""
        self.clock.set(hour + timedelta(hours=1, minutes=2))
        with self.meter.stage("checkpoint"):
            self.conn.execute("CHECKPOINT")
        run_id = f"scheduled__{hour.isoformat()}"
        workers = len(self.workers.pipes)
        wal0 = self.meter.wal_lsn()
        with self.meter.stage("export") as info:
            if self.has_groups:
                from events_pipeline.common.intervals import HourInterval
                from events_pipeline.export import groups as export_groups

                planned = export_groups.plan(export_groups.ExportRequest(hours=(HourInterval(hour),)))
                shares: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
                loads = [0] * workers
                for group in sorted(planned, key=lambda g: -int(g["weight"])):
                    i = loads.index(min(loads))
                    shares[i].append(group)
                    loads[i] += int(group["weight"])
                jobs = [
                    (i, "export", {"groups": s, "clients": None, "hour": hour.isoformat(), "run_id": run_id})
                    for i, s in enumerate(shares)
                    if s
                ]
            else:
                ids = [c.client_id for c in self.clients]
                jobs = [
                    (
                        i,
                        "export",
                        {
                            "groups": None,
                            "clients": ids[i::workers],
                            "hour": hour.isoformat(),
                            "run_id": run_id,
                        },
                    )
                    for i in range(workers)
                ]
            replies = self.workers.run(jobs)
            _account(info, replies)
            info["events"] = sum(r["rows"] for r in replies)
        self.exports.append(
            {
                "hour": hour.isoformat(),
                "rows": info["events"],
                "client_hours": sum(r["client_hours"] for r in replies),
                "seconds": round(info["seconds"], 3),
                "wal_bytes": self.meter.wal_lsn() - wal0,
                "table_rows": self.table_rows(),
            }
        )

    def bill(self, day: date) -> None:
        """At ``day+1 00:10``: bill ``day`` and its settle days, as ``events_billing`` does."""
        self.clock.set(datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, minutes=10))
        first = max(day - timedelta(days=2), self.args.first_day)
        with self.meter.stage("billing") as info:
            replies = self.workers.run(
                [
                    (
                        0,
                        "billing",
                        {"first": first.isoformat(), "last": day.isoformat(), "run_id": f"bill-{day}"},
                    )
                ]
            )
            _account(info, replies)

    def maintain(self, day: date, *, sweep: bool) -> None:
        """At ``day 03:05``: the maintenance steps, in order."""
        when = datetime(day.year, day.month, day.day, 3, 5, tzinfo=UTC)
        self.clock.set(when)
        rows_before = self.table_rows()
        wal0 = self.meter.wal_lsn()
        with self.meter.stage("maintenance") as info:
            replies = self.workers.run(
                [
                    (
                        0,
                        "maintenance",
                        {
                            "now": when.isoformat(),
                            "run_id": f"maint-{day}",
                            "archive_after_days": self.args.archive_after_days,
                            "archived_keep_days": self.args.archived_keep_days,
                            "sweep": sweep,
                        },
                    )
                ]
            )
            _account(info, replies)
        r = replies[0]
        self.maintenances.append(
            {
                "at": when.isoformat(),
                "seconds": round(info["seconds"], 3),
                "steps": r["steps"],
                "archived": r["archived"],
                "retention_deleted": r["retention_deleted"],
                "retention_modes": r["retention_modes"],
                "deferred": r["deferred"],
                "dropped": r["dropped"],
                "sweep_partitions_read": r["sweep_partitions_read"],
                "sweep_full_passes": r["sweep_full_passes"],
                "sweep_rows_treated": r["sweep_rows_treated"],
                "table_rows_before": rows_before,
                "wal_bytes": self.meter.wal_lsn() - wal0,
                "peak_mb": round(r["peak_mb"], 1),
            }
        )

    def table_rows(self) -> int:
        """Live rows of ``events_log`` from the statistics system (``n_live_tup`` of its partitions)."""
        return int(
            self.conn.execute(
                "SELECT coalesce(sum(s.n_live_tup), 0) FROM pg_inherits i JOIN pg_stat_user_tables s "
                "ON s.relid = i.inhrelid WHERE i.inhparent = 'events_log'::regclass"
            ).fetchone()[0]
        )

    def record_size(self, day: date) -> None:
        """Record ``events_log``'s size (heap + TOAST, indexes), the database's and the WAL position."""
        heap, index, parts = self.conn.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0), coalesce(sum(pg_indexes_size(c.oid)), 0), "
            "count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events_log'::regclass"
        ).fetchone()
        self.sizes.append(
            {
                "day": day.isoformat(),
                "table_bytes": int(heap),
                "index_bytes": int(index),
                "partitions": int(parts),
                "database_bytes": int(
                    self.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                ),
                "rows_estimate": self.table_rows(),
                "wal_lsn": self.meter.wal_lsn(),
            }
        )

    def housekeeping(self, day: date) -> None:
        """Untimed: delete ``day``'s processed landing objects and its exported objects from the S3 server."""
        with self.meter.stage("housekeeping (untimed, S3 only)"):
            prefixes = [(LANDING_BUCKET, f"processed/{day:%Y/%m/%d}/")]
            for c in self.clients:
                prefixes.append((bucket_of(c), f"{EXPORT_PREFIX}/dt={day:%Y-%m-%d}/"))
                prefixes.append((BACKUP_BUCKET, f"{c.client_id}/dt={day:%Y-%m-%d}/"))
            for bucket, prefix in prefixes:
                for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def exports_hour(args: argparse.Namespace, h: int, *, edge: bool) -> bool:
    """Whether the export runs after hour ``h``.

    Every ``--export-every``-th hour; on the first and the last day also the hour before
    ``--compare-hour`` and that hour, so the compared export holds one hour's rows.
    """
    every = args.export_every
    return h % every == every - 1 or (edge and h in (args.compare_hour - 1, args.compare_hour))


def bucket_of(client: BenchClient) -> str:
    """The client's own export bucket."""
    return f"bench-{client.client_id}"


def setup_database(conn: Any, clients: list[BenchClient], first_day: date) -> None:
    """Migrations, partitions around the first day, clients and their domains."""
    from events_pipeline.common.migrations import apply_migrations
    from events_pipeline.common.partitions import ensure_daily_partitions

    apply_migrations(conn)
    conn.autocommit = True
    ensure_daily_partitions(conn, first_day - timedelta(days=1), first_day + timedelta(days=3))
    with conn.transaction():
        for c in clients:
            conn.execute(
                "INSERT INTO clients (client_id, name, privacy_level, export_bucket, export_prefix, "
                "retention_days) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    c.client_id,
                    f"Client {c.client_id}",
                    c.privacy_level,
                    bucket_of(c),
                    EXPORT_PREFIX,
                    c.retention_days,
                ),
            )
            conn.execute(
                "INSERT INTO client_domains (domain, client_id) VALUES (%s, %s)", (c.domain, c.client_id)
            )
    conn.execute("ALTER SYSTEM SET checkpoint_timeout = '1d'")
    conn.execute("SELECT pg_reload_conf()")


def start_postgres(work: Path, libfaketime: str, clock: SimClock) -> Any:
    """Start the embedded PostgreSQL under libfaketime (wall clock from ``clock``'s file only)."""
    from devtools import devstack

    saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE")}
    os.environ.update(
        LD_PRELOAD=libfaketime,
        FAKETIME_TIMESTAMP_FILE=str(clock.path),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    try:
        return devstack.start_postgres(work / "pg" / "data")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def postmaster_pid(data_dir: Path) -> int:
    """The postmaster's pid (first line of ``postmaster.pid``)."""
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def run_month(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Set everything up, live through the month, return the report."""
    import logging

    import numpy as np
    import psycopg

    from devtools import devstack

    logging.getLogger("events_pipeline").setLevel(logging.WARNING)
    libfaketime = find_libfaketime(work)
    work.chmod(0o755)  # PostgreSQL runs as another user when this runs as root: it reads the clock file
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=args.days + 2)
    args.first_day = first_day
    days = [first_day + timedelta(days=i) for i in range(args.days)]
    clock = SimClock(work / "clock")
    clock.set(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC) - timedelta(days=1))
    pg = start_postgres(work, libfaketime, clock)
    s3srv = devstack.start_s3()
    workers: Workers | None = None
    meter: Meter | None = None
    try:
        pg.create_database("events")
        dsn = pg.dsn("events")
        clients = make_clients(args.clients, args.retention_days)
        s3 = devstack.s3_client(s3srv.endpoint_url)
        devstack.create_buckets(
            s3srv.endpoint_url, [LANDING_BUCKET, BACKUP_BUCKET, *(bucket_of(c) for c in clients)]
        )
        conn = psycopg.connect(dsn, autocommit=True)
        setup_database(conn, clients, first_day)
        env = {
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_EVENTS_DB": pg.airflow_uri("events"),
            "AIRFLOW_CONN_AWS_DEFAULT": devstack.aws_connection_json(s3srv.endpoint_url),
            "AIRFLOW_VAR_EVENTS_LANDING_BUCKET": LANDING_BUCKET,
            "AIRFLOW_VAR_EVENTS_BACKUP_BUCKET": BACKUP_BUCKET,
            "AIRFLOW_VAR_EVENTS_IP_HASH_SECRET": SECRET,
            "AWS_ACCESS_KEY_ID": devstack.LOCAL_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": devstack.LOCAL_AWS_SECRET,
            "AWS_DEFAULT_REGION": devstack.LOCAL_REGION,
            "BENCH_DSN": dsn,
            "BENCH_S3_ENDPOINT": s3srv.endpoint_url,
        }
        if args.profile:
            env["BENCH_PROFILE_DIR"] = str(work)
        os.environ.update(env)
        t_setup = time.perf_counter()
        workers = Workers(2, env)
        worker_start_s = time.perf_counter() - t_setup
        meter = Meter(conn, postmaster_pid(pg.data_dir))
        weights = np.array([c.weight * (1 - UNKNOWN_SHARE) for c in clients] + [UNKNOWN_SHARE])
        weights /= weights.sum()
        t0 = time.perf_counter()
        templates = build_templates(clients, seed=7)
        template_s = time.perf_counter() - t0
        has_groups = (REPO / "plugins" / "events_pipeline" / "export" / "groups.py").is_file()
        month = Month(args, clients, clock, conn, s3, workers, meter, templates, weights, has_groups)
        per_day = MONTH_EVENTS * args.scale / MONTH_DAYS
        counts = hour_counts(days, per_day, seed=11)
        wall0 = time.perf_counter()
        month.start_lsn = meter.wal_lsn()
        loaded = 0
        for index, day in enumerate(days):
            day_t0 = time.perf_counter()
            files = month.generate_day(day, counts)
            per_hour: dict[str, int] = {}
            for f in files:
                per_hour[hour_prefix(f.key)] = per_hour.get(hour_prefix(f.key), 0) + 1
            for h in range(24):
                hour = datetime(day.year, day.month, day.day, h, tzinfo=UTC)
                if h == 3 and index > 0:
                    month.maintain(day, sweep=not args.sweep_edges_only or index == 1)
                loaded += month.ingest_hour(hour, per_hour.get(f"{INCOMING}{hour:%Y/%m/%d/%H}", 0))
                if exports_hour(args, h, edge=index in (0, len(days) - 1)):
                    month.export_hour(hour)
            month.bill(day)
            if index > 0:
                month.housekeeping(days[index - 1])
            month.record_size(day)
            print(
                f"day {index + 1}/{len(days)} {day}: {sum(f.events for f in files):,} events, "
                f"loaded so far {loaded:,}, {time.perf_counter() - day_t0:.1f} s "
                f"(load avg {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        final_day = days[-1] + timedelta(days=1)
        month.maintain(final_day, sweep=True)
        month.record_size(final_day)
        wall = time.perf_counter() - wall0
        result = report(month, args, days, loaded, wall, template_s, worker_start_s)
        workers.stop()
        workers = None
        if args.profile:
            result["profile_top"] = profile_summary(work)
        return result
    finally:
        if meter is not None:
            meter.close()
        if workers is not None:
            workers.stop()
        s3srv.stop()
        pg.stop()


# --------------------------------------------------------------------------- the report


def profile_summary(work: Path, top: int = 30) -> str:
    """The workers' merged profile (CPU seconds), the ``top`` functions by cumulative time."""
    import io
    import pstats

    files = sorted(str(p) for p in work.glob("worker-*.pstats"))
    if not files:
        return ""
    buf = io.StringIO()
    stats = pstats.Stats(files[0], stream=buf)
    for f in files[1:]:
        stats.add(f)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def _nonnegative_fit(x: Any, y: Any) -> tuple[float, float]:
    """Least squares ``y = a * x[:, 0] + b * x[:, 1]`` with ``a, b >= 0`` (else the better one-term fit)."""
    import numpy as np

    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    if a >= 0 and b >= 0:
        return float(a), float(b)
    only = [
        (float(x[:, 0] @ y / (x[:, 0] @ x[:, 0])), 0.0),
        (0.0, float(x[:, 1] @ y / (x[:, 1] @ x[:, 1]))),
    ]
    return min(only, key=lambda ab: float(np.sum((x @ np.array(ab) - y) ** 2)))


def _per_row_fit(exports: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares ``seconds = a * client_hours + b * rows`` (both >= 0) over the hourly exports."""
    import numpy as np

    x = np.array([[e["client_hours"], e["rows"]] for e in exports], dtype=float)
    y = np.array([e["seconds"] for e in exports], dtype=float)
    a, b = _nonnegative_fit(x, y)
    return {"ms_per_client_hour": round(float(a) * 1000, 2), "us_per_row": round(float(b) * 1e6, 3)}


def _ingest_fit(ingests: list[dict[str, Any]]) -> dict[str, float]:
    """Least squares ``seconds = a + b * events`` over the hourly ingests (every hour has the same files)."""
    import numpy as np

    x = np.array([[1.0, e["events"]] for e in ingests])
    y = np.array([e["seconds"] for e in ingests])
    a, b = _nonnegative_fit(x, y)
    files = statistics.mean(e["files"] for e in ingests)
    return {
        "s_per_hour_fixed": round(float(a), 3),
        "files_per_hour": files,
        "us_per_event": round(float(b) * 1e6, 2),
    }


def extrapolate_full_month(out: dict[str, Any], days: int) -> dict[str, Any]:
    """The 1/10 month at scale 1 with an export every hour, from this run's fits (an estimate, not a run)."""
    hours = MONTH_DAYS * 24
    events_hour = MONTH_EVENTS / hours
    ing, exp = out["ingest_fit"], out["export_fit"]
    # The hour's fixed ingest cost is per file: scaled to the default shards' files per hour.
    default_files = DEFAULT_SHARDS * 60 // SLOT_MINUTES
    fixed = ing["s_per_hour_fixed"] * default_files / max(ing["files_per_hour"], 1)
    ingest_s = hours * (fixed + ing["us_per_event"] / 1e6 * events_hour)
    export_s = hours * (
        exp["ms_per_client_hour"] / 1000 * DEFAULT_CLIENTS + exp["us_per_row"] / 1e6 * events_hour
    )
    gen = out["stages"]["generate"]
    gen_s = gen["seconds"] / max(gen["events"], 1) * MONTH_EVENTS
    deliver = out["stages"]["deliver"]
    deliver_s = deliver["seconds"] * MONTH_DAYS / days
    return {
        "label": f"EXTRAPOLATED from this run's fits, not measured: 20M events, 30 days, {DEFAULT_CLIENTS} "
        f"clients, {DEFAULT_SHARDS} shards, an export every hour",
        "generate_s": round(gen_s),
        "deliver_s": round(deliver_s),
        "ingest_s": round(ingest_s),
        "export_s": round(export_s),
        "export_client_hours": hours * DEFAULT_CLIENTS,
        "total_s": round(gen_s + deliver_s + ingest_s + export_s),
    }


def _compare(start: dict[str, Any], end: dict[str, Any], key: str = "seconds") -> dict[str, Any]:
    return {
        "start": start,
        "end": end,
        "ratio_end_to_start": round(end[key] / start[key], 2) if start[key] else None,
    }


def report(
    month: Month,
    args: argparse.Namespace,
    days: list[date],
    loaded: int,
    wall: float,
    template_s: float,
    worker_start_s: float,
) -> dict[str, Any]:
    """Assemble the JSON report (stages, start vs end, sizes, 1/1 on paper)."""
    stages = {name: s.as_dict() for name, s in month.meter.stages.items()}
    by_day: dict[str, list[dict[str, Any]]] = {}
    for e in month.exports:
        by_day.setdefault(e["hour"][:10], []).append(e)
    first, last = by_day[days[0].isoformat()], by_day[days[-1].isoformat()]

    def at_hour(exports: list[dict[str, Any]]) -> dict[str, Any]:
        return next(e for e in exports if int(e["hour"][11:13]) == args.compare_hour)

    export_cmp = _compare(at_hour(first), at_hour(last))
    if args.export_every == 1:
        export_cmp["median_of_day"] = {
            "first_day_s": statistics.median(e["seconds"] for e in first),
            "last_day_s": statistics.median(e["seconds"] for e in last),
        }
    m_start = month.maintenances[0]
    m_end = month.maintenances[-1]
    maint_cmp = _compare(m_start, m_end)
    size_end = month.sizes[-1]
    peak_size = max(month.sizes, key=lambda s: s["table_bytes"] + s["index_bytes"])
    wal_total = month.sizes[-1]["wal_lsn"] - month.start_lsn
    ingest, export = month.meter.stages["ingest"], month.meter.stages["export"]
    bytes_per_row = (peak_size["table_bytes"] + peak_size["index_bytes"]) / max(peak_size["rows_estimate"], 1)
    out: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": args.load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "postgres": "embedded PostgreSQL 16 (pgserver), shared_buffers 128 MB, max_wal_size 1 GB, "
            "checkpoint_timeout 1d + CHECKPOINT before every hourly export",
        },
        "month": {
            "days": len(days),
            "first_day": days[0].isoformat(),
            "scale": args.scale,
            "clients": args.clients,
            "gdpr_clients": sum(1 for c in month.clients if c.privacy_level == "gdpr"),
            "biggest_client_share": round(month.clients[0].weight, 4),
            "events_generated": month.generated_events,
            "events_loaded": loaded,
            "landing_files": month.landing_files,
            "bytes_per_event_uncompressed": round(month.generated_raw_bytes / max(month.generated_events, 1)),
            "landing_gzip_bytes": month.generated_gzip_bytes,
            "exported_rows": sum(e["rows"] for e in month.exports),
            "client_hours_exported": sum(e["client_hours"] for e in month.exports),
            "export_path": "export.groups (plan + run_group)" if month.has_groups else "export_client_hour",
            "export_every_hours_between_first_and_last_day": args.export_every,
            "retention_days": args.retention_days,
            "archive_after_days": args.archive_after_days,
            "archived_keep_days": args.archived_keep_days,
            "sweep": "first and final maintenance only" if args.sweep_edges_only else "every maintenance",
            "partitions_dropped": sum(len(m["dropped"]) for m in month.maintenances),
        },
        "wall_seconds": round(wall, 1),
        "setup_seconds": {"templates": round(template_s, 2), "worker_start": round(worker_start_s, 2)},
        "stages": stages,
        "export_fit": _per_row_fit(month.exports),
        "ingest_fit": _ingest_fit(month.ingests),
        "export_end_vs_start": export_cmp,
        "maintenance_end_vs_start": maint_cmp,
        "sizes": month.sizes,
        "size_at_end": size_end,
        "size_at_peak": peak_size,
        "wal_total_bytes": wal_total,
        "wal_per_day_bytes": round(wal_total / len(days)),
        "bytes_per_row_table_and_indexes": round(bytes_per_row),
        "exports": month.exports,
        "maintenances": month.maintenances,
    }
    out["on_paper_full_design"] = on_paper(out, ingest, export, len(days))
    out["extrapolated_full_1_10_month"] = extrapolate_full_month(out, len(days))
    out["ingests"] = month.ingests
    return out


def on_paper(out: dict[str, Any], ingest: Stage, export: Stage, days: int) -> dict[str, Any]:
    """What the full design volume (10x this month at scale 1) would need, from the measured rates."""
    full_day = DESIGN_MONTH_EVENTS / MONTH_DAYS
    peak_factor = max(diurnal_weights())
    avg_eps = full_day / 86_400
    ingest_cpu_us = (ingest.worker_cpu + ingest.postgres_cpu + ingest.s3_cpu) / max(ingest.events, 1) * 1e6
    ingest_pg_us = ingest.postgres_cpu / max(ingest.events, 1) * 1e6
    export_cpu = export.worker_cpu + export.postgres_cpu + export.s3_cpu
    client_hours = out["month"]["client_hours_exported"]
    fit = out["export_fit"]
    per_day_wal = out["wal_per_day_bytes"] / out["month"]["scale"] * 10
    per_day_size = out["bytes_per_row_table_and_indexes"] * full_day

    def cores(eps: float, us: float) -> float:
        return round(eps * us / 1e6, 2)

    hour_rows = full_day / 24 * peak_factor
    return {
        "events_per_day": round(full_day),
        "events_per_second_average": round(avg_eps, 1),
        "events_per_second_diurnal_peak_hour": round(avg_eps * peak_factor, 1),
        "events_per_second_design_burst": DESIGN_PEAK_EVENTS_PER_S,
        "ingest_cpu_us_per_event_all_processes": round(ingest_cpu_us, 1),
        "ingest_postgres_cpu_us_per_event": round(ingest_pg_us, 1),
        "ingest_cores_average": cores(avg_eps, ingest_cpu_us),
        "ingest_cores_diurnal_peak": cores(avg_eps * peak_factor, ingest_cpu_us),
        "ingest_cores_design_burst": cores(DESIGN_PEAK_EVENTS_PER_S, ingest_cpu_us),
        "postgres_copy_ceiling_events_per_s_per_core": round(1e6 / ingest_pg_us) if ingest_pg_us else None,
        "export_cpu_s_per_client_hour_all_processes": round(export_cpu / max(client_hours, 1), 4),
        "export_cpu_us_per_row_all_processes": round(export_cpu / max(export.events, 1) * 1e6, 1),
        "export_peak_hour_seconds_2_workers_same_clients": round(
            fit["ms_per_client_hour"] / 1000 * out["month"]["clients"] + fit["us_per_row"] / 1e6 * hour_rows,
            1,
        ),
        "export_peak_hour_seconds_2_workers_1000_clients": round(
            fit["ms_per_client_hour"] / 1000 * 1000 + fit["us_per_row"] / 1e6 * hour_rows, 1
        ),
        "table_and_index_bytes_per_day": round(per_day_size),
        "wal_bytes_per_day": round(per_day_wal),
        "note": "linear extrapolation of this run's per-event and per-client-hour costs; "
        f"{days} simulated days, scale {out['month']['scale']}, "
        f"{out['month']['events_loaded'] / max(out['month']['landing_files'], 1):.0f} events per landing "
        "file (per-file costs are in the per-event figures: larger files cost less per event)",
    }


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 1e10 else f"{n / 1e9:,.1f} GB"


def print_report(r: dict[str, Any]) -> None:
    """Print the stage table, start vs end and the on-paper figures."""
    m = r["month"]
    print(
        f"\nmonth benchmark: {m['events_loaded']:,} events over {m['days']} days (scale {m['scale']}), "
        f"{m['clients']} clients ({m['gdpr_clients']} GDPR), {m['landing_files']:,} landing files, "
        f"{m['bytes_per_event_uncompressed']} B/event; wall {r['wall_seconds']:,.0f} s; "
        f"load avg at end {r['machine']['load_average_at_end']}"
    )
    head = (
        f"{'stage':<32}{'runs':>6}{'wall s':>9}{'events/s':>10}{'ev/CPU-s':>10}{'CPU wrk/pg/me s':>20}"
        f"{'worker MB':>10}{'pg PSS MB':>10}{'WAL':>10}{'busy':>6}"
    )
    print(head)
    for s in r["stages"].values():
        cpu = f"{s['worker_cpu']:.0f}/{s['postgres_cpu']:.0f}/{s['s3_cpu']:.0f}"
        print(
            f"{s['name']:<32}{s['runs']:>6}{s['seconds']:>9.1f}{s['events_per_second'] or 0:>10,}"
            f"{s['events_per_cpu_second'] or 0:>10,}{cpu:>20}{s['worker_peak_mb']:>10.0f}"
            f"{s['postgres_pss_peak_mb']:>10.0f}{_mb(s['wal_bytes']):>10}{s['machine_busy'] or 0:>6.2f}"
        )
    size = r["size_at_peak"]
    print(
        f"events_log at its largest ({size['day']}): table {_mb(size['table_bytes'])}, indexes "
        f"{_mb(size['index_bytes'])}, {size['partitions']} partitions, ~{size['rows_estimate']:,} rows "
        f"({r['bytes_per_row_table_and_indexes']} B/row); at the end: table "
        f"{_mb(r['size_at_end']['table_bytes'])}, indexes {_mb(r['size_at_end']['index_bytes'])}; "
        f"WAL {_mb(r['wal_total_bytes'])} ({_mb(r['wal_per_day_bytes'])}/day)"
    )
    e = r["export_end_vs_start"]
    print(
        f"one hourly export, {e['start']['hour'][11:16]} of the first vs the last day: "
        f"{e['start']['seconds']:.2f} s ({e['start']['rows']:,} rows) -> {e['end']['seconds']:.2f} s "
        f"({e['end']['rows']:,} rows), ratio {e['ratio_end_to_start']}; "
        + (
            f"medians of the day {e['median_of_day']['first_day_s']:.2f} -> "
            f"{e['median_of_day']['last_day_s']:.2f} s; "
            if "median_of_day" in e
            else ""
        )
        + f"fit {r['export_fit']['ms_per_client_hour']} ms/client-hour "
        f"+ {r['export_fit']['us_per_row']} us/row"
    )
    mt = r["maintenance_end_vs_start"]
    print(
        f"one daily maintenance, first vs final: {mt['start']['seconds']:.2f} s {mt['start']['steps']} -> "
        f"{mt['end']['seconds']:.2f} s {mt['end']['steps']}, ratio {mt['ratio_end_to_start']}; "
        f"GDPR sweep read {mt['start']['sweep_partitions_read']} -> {mt['end']['sweep_partitions_read']} "
        f"partition(s); partitions dropped over the month: {m['partitions_dropped']}, "
        f"{r['size_at_end']['partitions']} at the end"
    )
    print(
        "maintenance per day (s, sweep partitions read, dropped): "
        + ", ".join(
            f"{x['at'][5:10]} {x['seconds']:.1f}/{x['sweep_partitions_read']}/{len(x['dropped'])}"
            for x in r["maintenances"]
        )
    )
    x = r["extrapolated_full_1_10_month"]
    print(
        f"{x['label']}: generate {x['generate_s']:,} s, deliver {x['deliver_s']:,} s, ingest "
        f"{x['ingest_s']:,} s, export {x['export_s']:,} s ({x['export_client_hours']:,} client-hours), "
        f"total {x['total_s']:,} s; ingest fit {r['ingest_fit']}"
    )
    print("1/1 on paper (full design volume, 10x):")
    for k, v in r["on_paper_full_design"].items():
        print(f"  {k}: {v:,}" if isinstance(v, int | float) else f"  {k}: {v}")


def main() -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1/10 month (20M events)")
    parser.add_argument("--days", type=int, default=MONTH_DAYS, help="simulated days")
    parser.add_argument("--clients", type=int, default=120, help="clients (long-tail sizes)")
    parser.add_argument("--shards", type=int, default=2, help="collector shards: files per 5 minutes")
    parser.add_argument("--retention-days", type=int, default=7, help="retention of most clients")
    parser.add_argument("--archive-after-days", type=int, default=30, help="events_archive_after_days")
    parser.add_argument(
        "--archived-keep-days", type=int, default=7, help="events_archived_keep_days (negative: never)"
    )
    parser.add_argument(
        "--sweep-edges-only",
        action="store_true",
        help="run the GDPR sweep in the first and the final maintenance only (default: every day, as "
        "events_maintenance does)",
    )
    parser.add_argument(
        "--export-every",
        type=int,
        default=1,
        help="between the first and the last day, export only every N-th hour (each run then takes the rows "
        "of the N hours, as a catch-up does); the first and last days always export every hour",
    )
    parser.add_argument("--compare-hour", type=int, default=12, help="hour of day compared first vs last day")
    parser.add_argument("--profile", action="store_true", help="cProfile the workers' loads and exports")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "month.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (database) afterwards")
    args = parser.parse_args()
    if args.days < 2:
        parser.error("--days must be at least 2 (start and end are compared)")
    if not 1 <= args.export_every <= 24 or 24 % args.export_every:
        parser.error("--export-every must divide 24")
    args.load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-month-"))
    try:
        result = run_month(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_report(result)
    if result.get("profile_top"):
        print(result["profile_top"])
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
