"""GDPR erasure requests: delete a visitor's events and purge them from backup exports."""
