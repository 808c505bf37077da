"""Event pipeline: landing files -> PostgreSQL -> per-client S3 exports.

Modules are named for the one thing they hold; DAG files in ``dags/`` only wire
their functions into tasks. Nothing here does I/O at import time.
"""
