"""The helpers that lean on a library's private or undocumented behaviour (``common.compat``)."""

from __future__ import annotations

from events_pipeline.common.compat import copy_error_line


def test_copy_error_line_is_read_from_the_error_context() -> None:
    class Diag:
        context = 'COPY events_log, line 17, column raw_event_data: "{...}"'

    class FakeCopyError(Exception):
        diag = Diag()

    assert copy_error_line(FakeCopyError("x")) == 17
    assert copy_error_line(Exception("no context")) is None
