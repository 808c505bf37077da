#!/usr/bin/env bash
# Create .env for docker-compose.yaml from .env.example, filling every empty value
# (the secrets) with a fresh random one. Never overwrites an existing file.
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

umask 077
generated=()
while IFS= read -r line || [ -n "$line" ]; do
    if [[ "$line" =~ ^([A-Z0-9_]+)=$ ]]; then
        name="${BASH_REMATCH[1]}"
        if [ "$name" = AIRFLOW__CORE__FERNET_KEY ]; then
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
echo "init-env: UI login: $(sed -n 's/^EVENTS_ADMIN_USER=//p' "$target") /" \
     "the EVENTS_ADMIN_PASSWORD line of $target"
