"""Low-level building blocks every stage uses.

Settings and errors, database and S3 access, hour intervals, day partitions,
schema migrations, heap-range batching and failpoints. Nothing here imports a
stage package (``tests/unit/test_import_layers.py`` enforces it).
"""
