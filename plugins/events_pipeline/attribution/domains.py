"""Attribution: ``site_id`` normalisation and set-based matching to ``client_domains``.

The domain table is read once per file into a dict (:func:`load_domain_map`);
each distinct site is then matched in memory (exact domain, else the nearest
listed parent domain) and cached, so a file costs one query whatever its size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import psycopg

STANDARD = "standard"
GDPR = "gdpr"


class Owner(NamedTuple):
    """The client a domain belongs to.

    :param client_id: the client's id.
    :param privacy_level: ``standard`` or ``gdpr`` at load time.
    """

    client_id: str
    privacy_level: str


UNATTRIBUTED = Owner("", STANDARD)


def normalize_site(site: str) -> str | None:
    """Normalise a ``site_id``: lower-case, no port, no trailing dot, no scheme or path.

    ``"Shop.Acme.COM:8443."`` -> ``"shop.acme.com"``; ``"[2001:db8::1]:80"`` ->
    ``"2001:db8::1"``; an empty result gives ``None``.

    :param site: the ``site_id`` as sent.
    """
    s = site.strip().lower()
    if "://" in s:
        s = s.split("://", 1)[1]
    if "/" in s:
        s = s.split("/", 1)[0]
    if "@" in s:
        s = s.rsplit("@", 1)[1]
    if s.startswith("["):
        end = s.find("]")
        s = s[1:end] if end != -1 else s[1:]
    elif s.count(":") == 1:
        s = s.split(":", 1)[0]
    s = s.rstrip(".")
    return s or None


def host_from_url(url: str) -> str | None:
    """Return the normalised host of ``url`` (``None`` when it has none).

    :param url: an absolute URL such as ``https://Shop.acme.com:8080/cart``.
    """
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    return host or None


class DomainMatcher:
    """Match normalised sites to clients: exact domain, else nearest parent domain.

    :param domains: ``domain -> Owner`` (domains lower-case, as stored in
        ``client_domains``).
    """

    def __init__(self, domains: dict[str, Owner]) -> None:
        self._domains = domains
        self._cache: dict[str | None, Owner] = {None: UNATTRIBUTED}

    def match(self, site: str | None) -> Owner:
        """Return the owner of ``site`` (``UNATTRIBUTED`` when no domain matches).

        :param site: a normalised site id, or None.
        """
        cached = self._cache.get(site)
        if cached is not None:
            return cached
        owner = self._lookup(site) if site else UNATTRIBUTED
        if len(self._cache) < 100_000:
            self._cache[site] = owner
        return owner

    def _lookup(self, site: str) -> Owner:
        domains = self._domains
        candidate = site
        while True:
            owner = domains.get(candidate)
            if owner is not None:
                return owner
            dot = candidate.find(".")
            if dot == -1:
                return UNATTRIBUTED
            candidate = candidate[dot + 1 :]


def load_domain_map(conn: psycopg.Connection) -> dict[str, Owner]:
    """Read ``client_domains`` joined with ``clients`` into ``domain -> Owner``.

    :param conn: an open connection to the events database.
    """
    from events_pipeline.common.db import load_sql

    rows = conn.execute(load_sql("ingest/client_domains.sql")).fetchall()
    return {domain: Owner(client_id, privacy_level) for domain, client_id, privacy_level in rows}
