"""Named checkpoints of the ingest path where tests simulate a crash.

Production code calls :func:`checkpoint` between the steps whose interruption
must be recoverable (before the load commits, after it commits, in the middle
of the move). Nothing is registered outside tests, so a checkpoint costs one
dict lookup. Tests use :func:`inject` to raise there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The checkpoints, in the order a file passes them.
POINTS = ("before_commit", "after_commit", "during_move")

_hooks: dict[str, Callable[[str], None]] = {}


def checkpoint(name: str, key: str) -> None:
    """Run the hook registered for ``name`` (if any).

    :param name: one of :data:`POINTS`.
    :param key: the landing key being handled (passed to the hook).
    """
    hook = _hooks.get(name)
    if hook is not None:
        hook(key)


@contextmanager
def inject(name: str, hook: Callable[[str], None]) -> Iterator[None]:
    """Register ``hook`` at checkpoint ``name`` for the duration of the block.

    :param name: one of :data:`POINTS`.
    :param hook: called with the landing key; raise from it to simulate a crash.
    """
    if name not in POINTS:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(POINTS)}")
    _hooks[name] = hook
    try:
        yield
    finally:
        _hooks.pop(name, None)
