"""Daily upkeep of ``events_log``: retention, archival and re-attribution."""
