"""Which erasure requests a raw landing event belongs to.

A request names a client and a visitor. In the events database the client is the
row's ``client_id``; in the landing bucket (``processed/``, ``rejected/``,
``quarantine/``) events of every client sit side by side, so an event belongs to a
request when its ``visitor_id`` is the request's visitor and its site belongs to the
request's client by the attribution rule (contract §3.2: the exact domain, else the
nearest listed parent; ``site_id``, else the host of ``url``), or has no site at all
(it cannot be anyone else's). An event of the visitor on another client's site, or on
a site no client lists, is left alone: it is not this client's data.

Lines that are not JSON objects (rejected lines often are not) are read leniently:
the ``"visitor_id"``, ``"site_id"`` and ``"url"`` members are picked out of the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from events_pipeline.attribution.domains import DomainMatcher, Owner, host_from_url, normalize_site

_MEMBER_RE = {
    name: re.compile(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"') for name in ("visitor_id", "site_id", "url")
}


def event_fields(text: str | bytes) -> dict[str, Any]:
    """Return the members of one raw event line that matter here (``visitor_id``, ``site_id``, ``url``).

    A JSON object gives its members; anything else (invalid JSON, an array, a
    truncated line) gives what the text holds as ``"name": "value"`` pairs.

    :param text: the line (bytes are decoded as UTF-8, bad bytes replaced).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return {k: obj.get(k) for k in ("visitor_id", "site_id", "url")}
    out: dict[str, Any] = {}
    for name, pattern in _MEMBER_RE.items():
        found = pattern.search(text)
        if found:
            try:
                out[name] = json.loads(f'"{found[1]}"')
            except ValueError:
                out[name] = found[1]
    return out


@dataclass(frozen=True)
class Wanted:
    """One request being carried out in the landing bucket.

    :param request_id: the request.
    :param client_id: its client.
    :param visitor_id: its visitor.
    """

    request_id: int
    client_id: str
    visitor_id: str


class EventMatcher:
    """Decides which requests a landing event belongs to.

    :param wanted: the requests (several may name the same visitor).
    :param domains: ``domain -> Owner`` (``attribution.domains.load_domain_map``).
    """

    def __init__(self, wanted: Iterable[Wanted], domains: Mapping[str, Owner]) -> None:
        self.by_visitor: dict[str, list[Wanted]] = {}
        for w in wanted:
            self.by_visitor.setdefault(w.visitor_id, []).append(w)
        self._domains = DomainMatcher(dict(domains))
        self.needles = [v.encode("utf-8") for v in self.by_visitor]
        self.json_needles = [json.dumps(v).encode("utf-8")[1:-1] for v in self.by_visitor]

    def may_hold(self, data: bytes) -> bool:
        """Cheap pre-check: could ``data`` (uncompressed text) hold one of the visitors at all?

        :param data: the object's bytes.
        """
        return any(n in data for n in (*self.needles, *self.json_needles))

    def site_owner(self, fields: Mapping[str, Any]) -> str | None:
        """Return the client owning the event's site, ``""`` for a site nobody lists, None without a site.

        :param fields: the event's members (:func:`event_fields`).
        """
        site_id, url = fields.get("site_id"), fields.get("url")
        site = normalize_site(site_id) if isinstance(site_id, str) and site_id.strip() else None
        if site is None and isinstance(url, str):
            site = host_from_url(url)
        if site is None:
            return None
        return self._domains.match(site).client_id

    def requests_of(self, fields: Mapping[str, Any]) -> list[int]:
        """Return the ids of the requests the event belongs to (empty: keep it).

        :param fields: the event's members (:func:`event_fields`, or a Parquet row's columns).
        """
        visitor = fields.get("visitor_id")
        if not isinstance(visitor, str) or visitor not in self.by_visitor:
            return []
        owner = self.site_owner(fields)
        return [w.request_id for w in self.by_visitor[visitor] if owner is None or owner == w.client_id]
