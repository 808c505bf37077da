"""Daily billing rollups per client (``daily_rollup``)."""
