"""kopf glue that is worth a unit test."""

from __future__ import annotations

from typing import Any

import kopf

from sprintops.handlers import needs_daemon


def test_daemons_only_for_releases_with_work() -> None:
    def body(generation: int, **status: Any) -> kopf.Body:
        return kopf.Body({"metadata": {"generation": generation}, "status": status})

    assert needs_daemon(body(1))  # new
    assert needs_daemon(body(1, phase="Progressing", observedGeneration=1))
    assert needs_daemon(body(1, phase="Succeeded", observedGeneration=1))  # scale-down pending
    assert not needs_daemon(body(1, phase="Succeeded", observedGeneration=1, scaledDownAt="t"))
    assert not needs_daemon(body(1, phase="RolledBack", observedGeneration=1))
    assert needs_daemon(body(2, phase="RolledBack", observedGeneration=1))  # spec edited: retry
