"""ExportService.start (the REST export): an export that does not serve in time is stopped."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from vmvault.domain.errors import ExportFailed
from vmvault.services.exports import ExportService


def test_an_export_not_serving_in_time_is_stopped() -> None:
    stopped = threading.Event()

    def slow_export(*args: Any, stop: threading.Event | None = None, **kw: Any) -> Any:
        assert stop is not None, "start gave the export no way to stop it"
        stop.wait(10)  # never serves; ends when told to
        stopped.set()
        return SimpleNamespace(error=None)

    service = ExportService.__new__(ExportService)
    service.check = lambda *a, **k: None  # type: ignore[method-assign,assignment,return-value]
    service.export = slow_export  # type: ignore[method-assign]
    with pytest.raises(ExportFailed, match="did not start in time"):
        service.start("p1", timeout=0.2)
    assert stopped.wait(2), "the export kept running after start gave up"
