"""Ports for the local environment's servers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sprintops_dev.processes import free_port


def test_free_ports_are_distinct_bindable_and_outside_the_kernels_outgoing_range() -> None:
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= p < floor for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_two_test_workers_never_share_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each xdist worker brings up an environment of its own: a shared port would wire one
    environment's client to the other's server."""
    picked = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        picked[worker] = {free_port() for _ in range(100)}
    assert max(picked["gw0"]) < min(picked["gw1"])
