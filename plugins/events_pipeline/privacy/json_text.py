"""Where the values of a JSON text are, so a value can be replaced without re-serialising the rest.

The GDPR treatment edits an event's text in place (contract §2.4, §6.3): a few
values change, every other byte (key order, spacing, number spelling, escapes)
stays as the client sent it. Re-serialising a decoded event would not keep it:
an integer above 2**64 or a number like ``1.0000000000000000001`` comes back
rounded. :func:`scan` finds, in ONE pass over a valid JSON text, every string
value that might be an IP literal, the top-level keys and the top-level
``ip_address`` value; :func:`apply_edits` splices the replacements in.

The scan relies on the text being valid JSON (every caller parsed it first, or
PostgreSQL's ``json`` type holds it): a string token is then exactly
``"(?:[^"\\\\]|\\\\.)*"`` and a string followed by ``:`` is a key.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

from events_pipeline.privacy.ip_treatment import MAX_IP_TEXT

#: A token of a valid JSON text: a string, an opening or closing bracket, or a scalar
#: (number, ``true``, ``false``, ``null``); ``:``, ``,`` and whitespace are skipped.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{\[]|[}\]]|[^\s{}\[\]:,"]+')
#: What follows a key: optional whitespace and the colon.
_KEY_COLON = re.compile(r"[ \t\r\n]*:")
#: A decoded string that may be an IP literal: only hex digits, ``:`` and ``.`` (one of
#: the last two at least), between optional JSON whitespace. Everything else is not one.
MAYBE_IP = re.compile(r"[ \t\r\n]*[0-9A-Fa-f:.]*[.:][0-9A-Fa-f:.]*[ \t\r\n]*")


class Shape(NamedTuple):
    """What :func:`scan` found in a JSON text.

    :param candidates: ``(start, end, decoded)`` of each string VALUE (not key), at any
        depth, that :data:`MAYBE_IP` accepts (top-level ``ip_address`` values excluded).
    :param top_keys: the decoded keys of the top-level object (empty when it is not one).
    :param is_object: the text is a JSON object.
    :param top_ips: ``(start, end, value)`` of each top-level ``ip_address`` value (more
        than one when the key repeats; a decoder keeps the last): its decoded string, or
        :data:`NOT_STRING` for any other JSON value (``null`` included).
    """

    candidates: list[tuple[int, int, str]]
    top_keys: list[str]
    is_object: bool
    top_ips: list[tuple[int, int, Any]]


#: The decoded value of a top-level ``ip_address`` that is not a JSON string.
NOT_STRING = object()


def decode_string(token: str) -> str:
    """The value of one JSON string token (its escapes decoded).

    :param token: the token with its quotes, e.g. ``"203\\u002e0.113.7"``.
    """
    return orjson.loads(token) if "\\" in token else token[1:-1]


def scan(text: str, *, ip_key: str = "ip_address") -> Shape:
    """Find the string values of ``text`` that may be IP literals, its top-level keys and ``ip_key`` values.

    Keys are never candidates. A top-level ``ip_key`` value is reported in
    :attr:`Shape.top_ips`, not as a candidate (strings nested inside it are candidates).

    :param text: a valid JSON text.
    :param ip_key: the top-level member whose values are reported in :attr:`Shape.top_ips`.
    """
    candidates: list[tuple[int, int, str]] = []
    top_keys: list[str] = []
    top_ips: list[tuple[int, int, Any]] = []
    depth = 0
    is_object = False
    ip_next = False  # the next token is a top-level ip_key value
    ip_open = -1  # start of the top-level ip_key value being read when it is an object or array
    key_colon = _KEY_COLON.match
    for m in _TOKEN.finditer(text):
        token = m.group()
        first = token[0]
        if first == "{" or first == "[":
            if depth == 0:
                is_object = first == "{"
            if ip_next:
                ip_next, ip_open = False, m.start()
            depth += 1
            continue
        if first == "}" or first == "]":
            depth -= 1
            if ip_open >= 0 and depth == 1:
                top_ips.append((ip_open, m.end(), NOT_STRING))
                ip_open = -1
            continue
        if first == '"':
            if key_colon(text, m.end()):
                if depth == 1 and is_object:
                    key = decode_string(token)
                    top_keys.append(key)
                    ip_next = key == ip_key
                continue
            if ip_next:
                ip_next = False
                top_ips.append((m.start(), m.end(), decode_string(token)))
                continue
            if not _could_be_ip(token):
                continue
            value = decode_string(token)
            if len(value) <= MAX_IP_TEXT and MAYBE_IP.fullmatch(value):
                candidates.append((m.start(), m.end(), value))
            continue
        if ip_next:  # a number, true, false or null
            ip_next = False
            top_ips.append((m.start(), m.end(), NOT_STRING))
    return Shape(candidates, top_keys, is_object, top_ips)


def _could_be_ip(token: str) -> bool:
    """Cheap first test of a string token (quotes included): short, and escapes or only IP characters."""
    if "\\" in token:  # each character may be spelled as a 6-character escape
        return len(token) <= 6 * MAX_IP_TEXT + 2
    return len(token) <= MAX_IP_TEXT + 2 and MAYBE_IP.fullmatch(token, 1, len(token) - 1) is not None


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace the spans of ``text`` given as ``(start, end, replacement)`` (non-overlapping).

    :param text: the original text.
    :param edits: the replacements, in any order.
    """
    if not edits:
        return text
    out: list[str] = []
    at = 0
    for start, end, replacement in sorted(edits):
        out.append(text[at:start])
        out.append(replacement)
        at = end
    out.append(text[at:])
    return "".join(out)


def add_member(text: str, member: str, *, has_members: bool) -> str:
    """Insert ``member`` (``"key":value``) before the closing brace of the top-level object.

    :param text: a JSON object text (whitespace may follow its closing brace).
    :param member: the member's text, without a comma.
    :param has_members: the object already has members (a comma goes first).
    """
    end = text.rfind("}")
    return text[:end] + ("," if has_members else "") + member + text[end:]


#: A JSON escape of a character IP literals are written with (digits, hex letters, ``.``,
#: ``:``): ``\\u0032`` for ``2``. Decoding one never changes what a text means.
_IP_CHAR_ESCAPE = re.compile(r"\\u00(2[eE]|3[0-9aA]|4[1-6]|6[1-6])")


def unescape_ip_chars(text: str) -> str:
    """Replace the JSON escapes of IP-literal characters (``\\u002e`` ...) by the characters.

    For texts that are not valid JSON (no token structure to rely on), so a loose
    search can see ``203\\u002e0.113.7`` as the address it spells.

    :param text: any text.
    """
    if "\\u00" not in text:
        return text
    return _IP_CHAR_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
