"""Completion candidates for `kubectl sprint`, without a cluster."""

from __future__ import annotations

import argparse

from sprintops.cli.completion import candidates

NAMES = ["document-service-sprint-42", "billing-sprint-42"]
asked: list[argparse.Namespace] = []


def _names(args: argparse.Namespace) -> list[str]:
    asked.append(args)
    return NAMES


def test_commands_first_with_their_help() -> None:
    found = candidates([""], _names)
    assert "status\tphase, step, weights, last checks, conditions, events" in found
    assert {c.split("\t")[0] for c in found} >= {"list", "watch", "promote", "abort"}
    assert [c.split("\t")[0] for c in candidates(["st"], _names)] == ["status"]


def test_release_names_after_a_command_from_the_namespace_the_flags_name() -> None:
    asked.clear()
    found = candidates(["status", "-n", "releases", "--context", "mgmt", "doc"], _names)
    assert found == ["document-service-sprint-42"]
    assert asked[-1].namespace == "releases" and asked[-1].context == "mgmt"
    assert candidates(["-n", "releases", "promote", ""], _names) == NAMES
    assert candidates(["status", "document-service-sprint-42", ""], _names) == []


def test_flags_and_flag_values() -> None:
    assert candidates(["-o", ""], _names) == ["table", "wide", "json", "yaml"]
    assert candidates(["list", "-o", "w"], _names) == ["wide"]
    assert candidates(["-n", ""], _names) == []
    assert "--force" in candidates(["promote", "--"], _names)
    assert "--all-namespaces" in candidates(["list", "--"], _names)
    assert "--force" not in candidates(["list", "--"], _names)
    assert candidates(["list", ""], _names) == []
