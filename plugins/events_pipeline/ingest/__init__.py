"""Ingest, in the order a landing file goes through it.

1. ``landing``: list ``incoming/`` objects and claim them in the registry;
2. ``file_readers``: stream the file as blocks of lines (NDJSON, gzip, Parquet);
3. ``validation``: the rules one event must satisfy;
4. ``row_builder`` (per line) and ``arrow_row_builder`` (vectorised fast path):
   validated, attributed, GDPR-treated events as COPY text;
5. ``copy_load``: the one load transaction (COPY, registry, per-client counts);
6. ``landing`` again: move the object to ``processed/``, ``rejected/`` or ``quarantine/``.

``pipeline`` drives one claimed file through these steps; the ``events_ingest``
tasks call its functions.
"""
