"""Links to the on-call runbook, for ``doc_md``, failure log lines and health messages."""

from __future__ import annotations

import os

#: The runbook's path inside the repository (and inside the Docker image).
RUNBOOK = "docs/runbook.md"
#: Environment variable with the base URL where the repository's docs are served
#: (e.g. ``https://git.example.com/data/events-pipeline/blob/main``); unset, links
#: are repository paths.
DOCS_BASE_URL_ENV = "EVENTS_DOCS_BASE_URL"


def runbook_link(anchor: str) -> str:
    """Return the runbook reference for an entry: ``[<base>/]docs/runbook.md#<anchor>``.

    :param anchor: the entry's heading anchor in ``docs/runbook.md``.
    """
    base = os.environ.get(DOCS_BASE_URL_ENV, "").rstrip("/")
    path = f"{base}/{RUNBOOK}" if base else RUNBOOK
    return f"{path}#{anchor}"
