"""Health checks (thresholds, SQL and S3 checks) and the hourly metrics report."""
