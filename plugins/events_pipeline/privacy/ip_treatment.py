"""GDPR treatment of IP addresses, shared by ingest and the daily sweep.

For clients with ``privacy_level='gdpr'`` a raw IP is never stored or exported
(docs/decisions/gdpr-ip-treatment.md):

- ``ip_address`` holds the *truncated* address: the IPv4 /24 or IPv6 /48
  network (``203.0.113.77`` -> ``203.0.113.0``; ``2001:db8:1:2::5`` -> ``2001:db8:1::``);
- in ``raw_event_data`` the ``ip_address`` field holds the same truncated value,
  and ``ip_pseudonym`` a keyed HMAC-SHA256 of the full address (secret: the
  Airflow Variable ``events_ip_hash_secret``), so a client can still count
  distinct addresses without anyone being able to enumerate them back;
- every other string VALUE of the event, at any depth (object members and array
  elements), that is an IP literal (:func:`ip_literal`: the whole string, surrounding
  ASCII whitespace aside) is replaced by its truncated address too. Keys, and strings
  that merely contain an address among other text (a URL, a header list), are kept.

Treatment is idempotent: applying it to an already-treated event changes
nothing (a truncated address truncates to itself and an existing pseudonym is kept).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from events_pipeline.common.errors import SettingError
from events_pipeline.common.settings import VAR_IP_HASH_SECRET

IPV4_PREFIX = 24
IPV6_PREFIX = 48
RAW_IP_FIELD = "ip_address"
PSEUDONYM_FIELD = "ip_pseudonym"
#: Hex characters of the HMAC kept as the pseudonym (128 bits).
PSEUDONYM_HEX_CHARS = 32
#: Shortest accepted pseudonym key: 32 bytes (256 bits, the HMAC-SHA256 block of security).
MIN_SECRET_BYTES = 32
#: NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): the last 32 bits are the IPv4 address.
_NAT64_PREFIX = bytes.fromhex("0064ff9b") + b"\x00" * 8
#: What surrounds an IP literal in a string value and is ignored (JSON whitespace).
IP_SPACE = " \t\r\n"
#: A string value longer than this (whitespace included) is never taken for an IP literal
#: (the longest one, an IPv6 address with a dotted IPv4 tail, has 45 characters).
MAX_IP_TEXT = 64


def check_secret(secret: str | None) -> str:
    """Return ``secret`` when it is a strong enough pseudonym key, else fail naming the setting.

    :param secret: the value of the Variable ``events_ip_hash_secret``.
    :raises SettingError: missing, or shorter than :data:`MIN_SECRET_BYTES` bytes (UTF-8);
        the message says how to generate one. Not retried: no retry can fix it.
    """
    size = len(secret.encode("utf-8")) if secret else 0
    if size < MIN_SECRET_BYTES:
        state = "is empty" if not size else f"is {size} bytes long"
        raise SettingError(
            f"Airflow Variable {VAR_IP_HASH_SECRET!r} {state}: the key of GDPR IP pseudonyms must be "
            f"at least {MIN_SECRET_BYTES} bytes. Generate one with "
            '`python -c "import secrets; print(secrets.token_hex(32))"` and set it in the UI '
            f"(Admin > Variables) or as AIRFLOW_VAR_{VAR_IP_HASH_SECRET.upper()}"
        )
    return secret  # type: ignore[return-value]


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 address carries, if it is of a kind that embeds one.

    IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16`` (bits 16-47), Teredo
    ``2001::/32`` (the client address, bits 96-127 inverted) and NAT64
    ``64:ff9b::/96`` (the last 32 bits). Such an address identifies the same
    visitor as its IPv4 address, so it is treated as that address.

    :param addr: the IPv6 address.
    """
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    packed = addr.packed
    if packed[:12] == _NAT64_PREFIX:
        return ipaddress.IPv4Address(packed[12:])
    return None


def ip_literal(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the address a string value spells, when the whole string is an IP literal.

    Strict, as ingest's ``ip_address`` rule: dotted IPv4 without leading zeros, any
    IPv6 text form (embedded dotted IPv4 included), no zone id (``%eth0``), no prefix
    length. Surrounding ASCII whitespace (:data:`IP_SPACE`) is ignored; a string of
    more than :data:`MAX_IP_TEXT` characters is not an IP literal.

    :param value: a decoded JSON string.
    :return: the address, or None when the string is not (only) an IP literal.
    """
    if len(value) > MAX_IP_TEXT:
        return None
    text = value.strip(IP_SPACE)
    if not text or "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _canonical(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(ip.strip())
    if isinstance(addr, ipaddress.IPv6Address):
        return embedded_ipv4(addr) or addr
    return addr


def truncate_ip(ip: str) -> str:
    """Return the network address of ``ip`` at /24 (IPv4) or /48 (IPv6).

    An IPv6 address that embeds an IPv4 address (:func:`embedded_ipv4`) is
    treated as the IPv4 address it carries.

    :param ip: an IPv4 or IPv6 literal.
    :raises ValueError: ``ip`` is not an IP literal.
    """
    addr = _canonical(ip)
    prefix = IPV4_PREFIX if addr.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def is_truncated(ip: str) -> bool:
    """Tell whether ``ip`` is already a /24 or /48 network address.

    :param ip: an IP literal.
    """
    try:
        return truncate_ip(ip) == str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return False


def ip_pseudonym(ip: str, secret: str) -> str:
    """Return the keyed pseudonym of ``ip``: HMAC-SHA256(secret, canonical ip), 32 hex chars.

    :param ip: an IP literal (canonicalised first, so ``::FFFF:1.2.3.4``,
        ``2002:102:304::`` and ``1.2.3.4`` share a pseudonym).
    :param secret: the key (Variable ``events_ip_hash_secret``).
    :raises SettingError: the secret is missing or too short (:func:`check_secret`).
    """
    check_secret(secret)
    addr = _canonical(ip)
    digest = hmac.new(secret.encode("utf-8"), str(addr).encode("ascii"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX_CHARS]


def treat_nested(value: Any) -> Any:
    """Replace every string value of a decoded JSON value that is an IP literal by its truncated address.

    Object members at any depth and array elements are visited; keys are kept.

    :param value: a decoded JSON value (dicts and lists are changed in place).
    :return: the treated value (a new string where ``value`` itself was an IP literal).
    """
    if isinstance(value, str):
        return truncate_ip(value.strip(IP_SPACE)) if ip_literal(value) is not None else value
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = treat_nested(item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = treat_nested(item)
    return value


def protect_event(raw: dict[str, Any], ip: str | None, secret: str) -> tuple[dict[str, Any], str | None]:
    """Apply the GDPR treatment to one event (contract §6.3).

    Every string value that is an IP literal, at any depth, is truncated
    (:func:`treat_nested`); the top-level ``ip_address`` member gets the truncated
    ``ip`` and ``ip_pseudonym`` the pseudonym of ``ip`` (the column value, else the
    top-level ``ip_address``).

    :param raw: the event object as stored in ``raw_event_data`` (changed in place).
    :param ip: the event's IP address (the column value), or None.
    :param secret: the pseudonym key.
    :return: ``(raw, truncated_ip)``; ``truncated_ip`` is None when there was no IP.
    :raises ValueError: ``ip`` (or the top-level ``ip_address`` string) is not an IP literal.
    """
    for key, item in raw.items():
        if key != RAW_IP_FIELD or not isinstance(item, str):  # a top-level string: the column's rule below
            raw[key] = treat_nested(item)
    if ip is None:
        raw_ip = raw.get(RAW_IP_FIELD)
        ip = raw_ip if isinstance(raw_ip, str) and raw_ip else None
    if ip is None:
        return raw, None
    truncated = truncate_ip(ip)
    if PSEUDONYM_FIELD not in raw and not is_truncated(ip):
        raw[PSEUDONYM_FIELD] = ip_pseudonym(ip, secret)
    if RAW_IP_FIELD in raw:
        raw[RAW_IP_FIELD] = truncated
    return raw, truncated
