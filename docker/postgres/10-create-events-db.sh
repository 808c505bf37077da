#!/usr/bin/env bash
# Creates the events database and its owner role next to Airflow's metadata
# database. The postgres image runs this once, when its data volume is empty
# (from /docker-entrypoint-initdb.d); the SQL is idempotent, so running it by
# hand on an existing server is safe too:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-create-events-db.sh
set -euo pipefail

: "${EVENTS_DB_USER:?EVENTS_DB_USER is not set (see .env)}"
: "${EVENTS_DB_PASSWORD:?EVENTS_DB_PASSWORD is not set (see .env)}"
events_db="${EVENTS_DB_NAME:-events}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

echo "create-events-db: role ${EVENTS_DB_USER}, database ${events_db}"
psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v events_user="${EVENTS_DB_USER}" \
    -v events_password="${EVENTS_DB_PASSWORD}" \
    -v events_db="${events_db}" \
    -f "${here}/sql/create_events_db.sql"
