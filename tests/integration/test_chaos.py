"""A short chaos run (make chaos is the long one): it must see no violation, and it can fail."""

from __future__ import annotations

from sprintops_dev import chaos
from tests.integration.conftest import Env, Operator


def test_short_chaos_run(env: Env, operator: Operator) -> None:
    operator.stop()  # the chaos run brings its own operator, and kills it
    try:
        report = chaos.run(
            env.layout, seed=7, releases=3, kills=4, unhealthy_every=2, timeout=240, prefix="smoke"
        )
    finally:
        operator.start()
    print(report.summary())
    assert report.kills >= 2, report.summary()
    assert report.samples > 50, report.summary()
    assert not report.violations, report.violations
    assert not report.stuck and not report.wrong, (report.stuck, report.wrong)
