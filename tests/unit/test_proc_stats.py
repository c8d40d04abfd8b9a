"""The bench's /proc sampler, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sprintops_dev.bench import proc_stats


def test_a_live_process_has_rss_and_cpu() -> None:
    rss, cpu = proc_stats(os.getpid())
    assert rss > 1 and cpu > 0


def test_an_ended_process_is_told_apart_whether_reaped_or_a_zombie() -> None:
    """Found by attack: a zombie (exited, not yet waited for) has /proc but no VmRSS, and
    the sampler died of a StopIteration."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):  # exited, not yet reaped
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    with pytest.raises(ProcessLookupError):
        proc_stats(child.pid)
    child.wait()
    with pytest.raises(ProcessLookupError):
        proc_stats(child.pid)
