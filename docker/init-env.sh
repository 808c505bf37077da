#!/usr/bin/env bash
# Create .env for docker-compose.yaml from .env.example, filling every empty value:
# the secrets with a fresh random one, EVENTS_PIPELINE_START_DATE with the current
# UTC hour (the DAGs start there: no flood of catch-up runs on a new deployment).
# Never overwrites an existing file.
#   docker/init-env.sh            # writes ./.env
#   docker/init-env.sh PATH       # writes PATH instead
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$repo/.env}"

if [ -e "$target" ]; then
    echo "init-env: $target already exists; not overwriting it (delete it to start over:" \
         "new secrets make existing volumes unreadable - see docs/docker.md)" >&2
    exit 1
fi

hex_secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
# A Fernet key is the urlsafe base64 encoding of 32 random bytes.
fernet_key() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'; }

# The current hour, UTC: the DAGs' start date (no catch-up runs before it).
start_hour="$(date -u +%Y-%m-%dT%H:00:00+00:00)"

umask 077
generated=()
while IFS= read -r line || [ -n "$line" ]; do
    if [[ "$line" =~ ^([A-Z0-9_]+)=$ ]]; then
        name="${BASH_REMATCH[1]}"
        if [ "$name" = EVENTS_PIPELINE_START_DATE ]; then
            printf '%s%s\n' "$line" "$start_hour"
            continue
        elif [ "$name" = AIRFLOW__CORE__FERNET_KEY ]; then
            printf '%s%s\n' "$line" "$(fernet_key)"
        else
            printf '%s%s\n' "$line" "$(hex_secret)"
        fi
        generated+=("$name")
    else
        printf '%s\n' "$line"
    fi
done <"$repo/.env.example" >"$target"

echo "init-env: wrote $target with new secrets for: ${generated[*]}"
echo "init-env: EVENTS_PIPELINE_START_DATE=$start_hour (the DAGs start at this hour; see docs/docker.md)"
echo "init-env: UI login: $(sed -n 's/^EVENTS_ADMIN_USER=//p' "$target") /" \
     "the EVENTS_ADMIN_PASSWORD line of $target"
