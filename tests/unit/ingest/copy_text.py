"""Test helper: read back PostgreSQL COPY text fields (the inverse of ``copy_rows.copy_text``)."""

from __future__ import annotations


def unescape_copy_field(field: str) -> str | None:
    """Decode one COPY text field: ``\\N`` is NULL; ``\\t \\n \\r \\\\`` are unescaped.

    :param field: the field as written between tabs.
    """
    if field == "\\N":
        return None
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[field[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
