"""Every place the pipeline leans on a library's private or undocumented behaviour.

Each helper here depends on something a library does not promise to keep:
a private attribute, or the wording of an error text. They live in one module so
an upgrade has one place to check, and ``tests/unit/common/test_compat.py``
fails loudly (naming the library) when an upgrade changes what they rely on.
"""

from __future__ import annotations

import re
from typing import Any

#: PostgreSQL's error context of a failed COPY row: ``COPY events_log, line 17``.
_COPY_LINE_RE = re.compile(r"COPY \S+, line (\d+)")


def bounded_copy_writer(cursor: Any, max_buffers: int) -> Any:
    """Return a psycopg queued COPY writer whose send queue holds at most ``max_buffers``.

    psycopg's :class:`~psycopg.copy.QueuedLibpqWriter` sends from a thread through
    an unbounded-by-default queue of 1024 buffers (~128 MB when Python produces
    faster than the server consumes). psycopg offers no parameter for its size,
    so the private ``_queue`` is replaced with a bounded one.

    :param cursor: the psycopg cursor the COPY runs on.
    :param max_buffers: how many buffers (<= 128 kB each) may wait.
    :raises RuntimeError: psycopg no longer has the private queue this relies on.
    """
    from queue import Queue

    from psycopg.copy import QueuedLibpqWriter

    writer = QueuedLibpqWriter(cursor)
    if not isinstance(getattr(writer, "_queue", None), Queue):
        raise RuntimeError(
            "psycopg's QueuedLibpqWriter has no '_queue' Queue any more: "
            "events_pipeline.common.compat.bounded_copy_writer needs updating for this psycopg version"
        )
    writer._queue = Queue(maxsize=max_buffers)
    return writer


def copy_error_line(exc: BaseException) -> int | None:
    """Return the COPY data line a PostgreSQL data error points at (1-based), if any.

    Read from the error's context (``COPY <table>, line N``), a server text, not an API.

    :param exc: a ``psycopg.errors.DataError`` (or similar) raised by COPY.
    """
    diag = getattr(exc, "diag", None)
    context = getattr(diag, "context", None) or ""
    match = _COPY_LINE_RE.search(context) or _COPY_LINE_RE.search(str(exc))
    return int(match.group(1)) if match else None
