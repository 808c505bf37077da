"""The GDPR rules for IP addresses.

``ip_treatment`` is the reference treatment of one event, ``fast_treatment``
the same result on the ingest hot path, ``sweep`` applies it to stored rows.
"""
