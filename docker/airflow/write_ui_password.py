"""Write the UI login of the simple auth manager from the environment.

Run by the ``airflow-init`` service of ``docker-compose.yaml``. Airflow's simple
auth manager generates a random password for every user missing from its
password file; writing the file first makes the login the one chosen in
``.env`` (``EVENTS_ADMIN_USER`` / ``EVENTS_ADMIN_PASSWORD``), stable across
container re-creations. Running it again rewrites the same file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    """Write ``{user: password}`` to the configured password file; return the exit code."""
    missing = [
        name
        for name in (
            "EVENTS_ADMIN_USER",
            "EVENTS_ADMIN_PASSWORD",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        )
        if not os.environ.get(name)
    ]
    if missing:
        print(
            f"write_ui_password: environment variable(s) {', '.join(missing)} not set (see .env)",
            file=sys.stderr,
        )
        return 1
    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    user = os.environ["EVENTS_ADMIN_USER"]
    path.write_text(json.dumps({user: os.environ["EVENTS_ADMIN_PASSWORD"]}) + "\n", encoding="utf-8")
    path.chmod(0o660)
    print(f"write_ui_password: UI user {user!r} written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
