"""Work in a background thread, with its result or exception handed back to the caller."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BackgroundCall(Generic[T]):
    """Run ``fn()`` in a daemon thread at once; :meth:`join` returns its result or re-raises.

    :param fn: the function to call, without arguments.
    :param name: the thread's name (shows in stack dumps and ``py-spy``).
    """

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn = fn
        self._result: T | None = None
        self._exc: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self._exc = exc

    def join(self) -> T:
        """Wait for the call; return its result or re-raise its exception here."""
        self._thread.join()
        if self._exc is not None:
            raise self._exc
        return self._result  # type: ignore[return-value]


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetched(items: Iterable[T], depth: int, name: str) -> Iterator[T]:
    """Yield ``items`` while a thread produces the next ones (at most ``depth`` waiting).

    An exception in the thread is re-raised in the caller; when the caller stops
    early, the thread stops after its current item.

    :param items: an iterable consumed only by the thread.
    :param depth: how many items may wait.
    :param name: the thread's name.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer thread
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
