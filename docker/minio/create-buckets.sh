#!/bin/sh
# One-shot MinIO setup, run by the minio-init service (minio/mc image):
#  - the landing, backup and demo client export buckets (EVENTS_BUCKETS);
#  - the pipeline's own access key (EVENTS_S3_ACCESS_KEY / EVENTS_S3_SECRET_KEY)
#    with the readwrite policy, so Airflow never holds the MinIO root login.
# Idempotent: existing buckets and users are kept; the user's secret is reset
# to the configured one.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set (see .env)}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set (see .env)}"
: "${EVENTS_S3_ACCESS_KEY:?EVENTS_S3_ACCESS_KEY is not set (see .env)}"
: "${EVENTS_S3_SECRET_KEY:?EVENTS_S3_SECRET_KEY is not set (see .env)}"
: "${EVENTS_BUCKETS:?EVENTS_BUCKETS is not set (space-separated bucket names)}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"

mc alias set events "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc ready events

for bucket in $EVENTS_BUCKETS; do
    mc mb --ignore-existing "events/$bucket"
done

mc admin user add events "$EVENTS_S3_ACCESS_KEY" "$EVENTS_S3_SECRET_KEY"
if ! err="$(mc admin policy attach events readwrite --user "$EVENTS_S3_ACCESS_KEY" 2>&1)"; then
    # Re-runs: attaching a policy the user already has is reported as an error.
    # (Shell pattern matching: the minimal mc image may not ship grep.)
    case "$(mc admin user info events "$EVENTS_S3_ACCESS_KEY")" in
        *readwrite*) echo "policy readwrite already attached to $EVENTS_S3_ACCESS_KEY" ;;
        *) echo "minio-init: cannot attach policy readwrite to $EVENTS_S3_ACCESS_KEY: $err" >&2; exit 1 ;;
    esac
fi
echo "minio-init: buckets ready: $EVENTS_BUCKETS; access key $EVENTS_S3_ACCESS_KEY has policy readwrite"
