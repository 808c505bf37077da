-- Billing is recomputed whole per day: remove the day's rows first (same transaction).
DELETE FROM billing_daily WHERE day = %(day)s
