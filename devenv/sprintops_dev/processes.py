"""Background processes of the local environment: start detached, find by pid, stop for good."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_GIVEN: set[int] = set()


def _ephemeral_floor() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def free_port() -> int:
    """A port that is free now and stays so until its server binds it.

    Not one the kernel hands out (bind to port 0): the same range serves every outgoing
    connection, and one of them took a kube-controller-manager's port between this choice
    and its bind. Below that range only an explicit bind takes a port; each is given once per
    process, and each pytest-xdist worker (each with an environment of its own) picks from a
    slice of its own, so two environments never share a server's port."""
    floor = _ephemeral_floor()
    low = max(1024, floor - 20000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slices = 4
    width = (floor - low) // slices
    if width < 100:  # an outgoing range that starts very low: leave it to the kernel
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    start = low + width * (int(worker) % slices if worker.isdigit() else 0)
    while True:
        port = secrets.choice(range(start, start + width))
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Starts a process in its own session, so it outlives `make env-up` and dies as a group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child, so a zombie does not count as alive.
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if not alive(pid):
            return


def terminate(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """SIGTERM a child, then SIGKILL it if it is still there after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    *,
    pid: int | None = None,
    log: Path | None = None,
) -> None:
    """Polls `check` until it holds; fails early, with the log's tail, if `pid` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        if pid is not None and not alive(pid):
            raise RuntimeError(f"{what} exited during start-up{_tail(log)}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n" + "\n".join(text)
