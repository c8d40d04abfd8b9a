"""`sprintops run` as a child process against the local environment (demo, tests, chaos)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from sprintops_dev.processes import free_port, terminate


class OperatorProcess:
    def __init__(self, env: Mapping[str, str], log: Path, *args: str) -> None:
        self.env = dict(env)
        self.log = log
        self.args = args
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sprintops.cli.main", "run", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "SPRINTOPS_METRICS_PORT": str(self.metrics_port)},
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crash would leave it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc)
