"""Background calls and prefetching: results, exceptions and early stops reach the caller."""

from __future__ import annotations

import threading

import pytest

from events_pipeline.common.background import BackgroundCall, prefetched


def test_background_call_returns_its_result_from_another_thread():
    call = BackgroundCall(lambda: threading.current_thread().name, name="bg-test")
    assert call.join() == "bg-test"


def test_background_call_reraises_in_the_caller():
    def fail() -> None:
        raise ValueError("moved nothing")

    with pytest.raises(ValueError, match="moved nothing"):
        BackgroundCall(fail, name="bg-fail").join()


def test_prefetched_yields_everything_in_order():
    assert list(prefetched(iter(range(100)), depth=2, name="pf")) == list(range(100))


def test_prefetched_reraises_the_producers_error_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("stream broke")

    got = []
    with pytest.raises(OSError, match="stream broke"):
        for item in prefetched(items(), depth=1, name="pf-fail"):
            got.append(item)
    assert got == [1, 2]


def test_prefetched_stops_the_producer_when_the_caller_stops_early():
    produced = []

    def items():
        for n in range(1_000):
            produced.append(n)
            yield n

    stream = prefetched(items(), depth=2, name="pf-stop")
    assert next(stream) == 0
    stream.close()
    assert len(produced) < 10
