-- Per-client export options (contract §3.2, §5.2; docs/export.md "Per-client options";
-- plugins/events_pipeline/export/formats.py holds the same rules and checks them again
-- before every export, naming the client and the column).
-- Defaults keep every existing client's files exactly as before: Parquet, zstd, no
-- server-side encryption header, part bounds from the Variables.
-- Idempotent: every statement can run again without effect. Adding a column with a
-- constant default does not rewrite the table.

-- export_format: 'parquet' or 'jsonl' (JSON Lines, one event object per line).
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_format text NOT NULL DEFAULT 'parquet';
-- export_compression: Parquet 'zstd' | 'gzip' | 'snappy' | 'none' (inside the file, per
-- column chunk); JSON Lines 'gzip' | 'zstd' | 'none' (the whole file: .jsonl.gz, .jsonl.zst).
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_compression text NOT NULL DEFAULT 'zstd';
-- export_sse: NULL (no header: the bucket's default encryption applies), 'AES256' or
-- 'aws:kms'; export_sse_kms_key_id: the KMS key (id, ARN or alias), with 'aws:kms' only.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_sse text;
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_sse_kms_key_id text;
-- The client's own part bounds; NULL: the Variables events_export_part_max_bytes / _rows.
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_part_max_bytes bigint;
ALTER TABLE clients ADD COLUMN IF NOT EXISTS export_part_max_rows bigint;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_format_valid') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_format_valid CHECK (export_format IN ('parquet', 'jsonl'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_compression_valid') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_compression_valid CHECK (
                (export_format = 'parquet' AND export_compression IN ('zstd', 'gzip', 'snappy', 'none'))
                OR (export_format = 'jsonl' AND export_compression IN ('gzip', 'zstd', 'none'))
            );
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_sse_valid') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_sse_valid CHECK (export_sse IN ('AES256', 'aws:kms'));
    END IF;
    -- A KMS key exactly when the encryption is aws:kms (NULL-safe on both sides).
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_sse_kms_key') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_sse_kms_key CHECK (
                (export_sse IS NOT DISTINCT FROM 'aws:kms') = (export_sse_kms_key_id IS NOT NULL)
                AND (export_sse_kms_key_id IS NULL
                     OR (export_sse_kms_key_id ~ '^[A-Za-z0-9][A-Za-z0-9:/_.+=@-]*$'
                         AND length(export_sse_kms_key_id) <= 2048))
            );
    END IF;
    -- A part is written to local disk before its upload: 1 MiB .. 5 GiB.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_part_max_bytes_range') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_part_max_bytes_range
            CHECK (export_part_max_bytes BETWEEN 1048576 AND 5368709120);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'clients_export_part_max_rows_range') THEN
        ALTER TABLE clients
            ADD CONSTRAINT clients_export_part_max_rows_range CHECK (export_part_max_rows >= 1000);
    END IF;
END
$$;
