"""Hourly per-client export.

``keys`` (object layout) -> ``parquet_parts`` (writing bounded parts) ->
``manifest`` (what an hour holds) -> ``client_hour`` (select, write, mark and
publish one client's hour; the ``events_export`` tasks call it).
"""
