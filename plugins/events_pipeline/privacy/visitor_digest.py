"""The visitor digest: how the pipeline names a visitor it must no longer hold in clear.

An erasure request names a client and a visitor id. Once the request is done, nothing
the pipeline keeps holds that id in clear; what remains is this digest, in the
tombstones that keep re-attribution and ingest from bringing the visitor's older events
back, and in the backup bucket's visitor index that tells erasure which hours hold a
visitor. Ingest, export, re-attribution and erasure compute it the same way, in Python
here and in SQL as ``sha256(convert_to(client_id || chr(31) || visitor_id, 'UTF8'))``.
"""

from __future__ import annotations

import hashlib

#: Separator between client id and visitor id in :func:`visitor_digest` (a client id never holds it).
DIGEST_SEPARATOR = "\x1f"


def visitor_digest(client_id: str, visitor_id: str) -> bytes:
    """Return the 32-byte SHA-256 digest of ``client_id``, U+001F, ``visitor_id`` (UTF-8).

    :param client_id: the client.
    :param visitor_id: the visitor id as the events carry it.
    """
    return hashlib.sha256(f"{client_id}{DIGEST_SEPARATOR}{visitor_id}".encode()).digest()
