#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned requirements (if changed).
# Usage: scripts/bootstrap.sh [runtime|dev]   (dev adds test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:-dev}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
venv=.venv

files=(requirements.txt)
[ "$kind" = dev ] && files+=(requirements-dev.txt)
stamp="$venv/.installed-$kind"
want="$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/airflow" ]; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating virtualenv $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
if [ ! -x "$venv/bin/uv" ]; then
  echo "bootstrap: installing uv into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
fi
echo "bootstrap: installing pinned requirements (${files[*]})"
args=()
for f in "${files[@]}"; do args+=(-r "$f"); done
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "${args[@]}"
echo "$want" > "$stamp"
echo "bootstrap: done"
