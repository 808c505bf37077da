-- Number of heap blocks of a table (bounds the TID-range batches).
SELECT (pg_relation_size(%(relation)s::regclass) / current_setting('block_size')::bigint) AS blocks
