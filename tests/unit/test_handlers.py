"""kopf glue that is worth a unit test."""

from __future__ import annotations

from typing import Any

import kopf

from sprintops.handlers import Entry, competitor, needs_daemon, successor, traffic_keys


def test_daemons_only_for_releases_with_work() -> None:
    def body(generation: int, **status: Any) -> kopf.Body:
        return kopf.Body({"metadata": {"generation": generation}, "status": status})

    assert needs_daemon(body(1))  # new
    assert needs_daemon(body(1, phase="Progressing", observedGeneration=1))
    assert needs_daemon(body(1, phase="Succeeded", observedGeneration=1))  # scale-down pending
    assert not needs_daemon(body(1, phase="Succeeded", observedGeneration=1, scaledDownAt="t"))
    assert not needs_daemon(body(1, phase="RolledBack", observedGeneration=1))
    assert needs_daemon(body(2, phase="RolledBack", observedGeneration=1))  # spec edited: retry


def _release(
    name: str, created: str, record: str = "docs", zone: dict[str, str] | None = None
) -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {"name": name, "namespace": "releases", "creationTimestamp": created},
            "spec": {
                "service": {"namespace": "documents", "name": name.rsplit("-", 1)[0]},
                "traffic": {
                    "route53": {
                        "hostedZone": zone or {"name": "sprintops.test."},
                        "recordName": f"{record}.sprintops.test.",
                    },
                    "istio": {"virtualService": {"namespace": "documents", "name": name}},
                },
            },
        }
    )


def _index(*entries: tuple[kopf.Body, str | None]) -> dict[tuple[str, ...], list[Entry]]:
    index: dict[tuple[str, ...], list[Entry]] = {}
    for body, phase in entries:
        entry = Entry(body.metadata["creationTimestamp"], f"releases/{body.metadata.name}", phase)
        for key in traffic_keys(body["spec"]):
            index.setdefault(key, []).append(entry)
    return index


def test_two_services_naming_one_record_take_turns() -> None:
    first, second = _release("svc-e-51", "t1"), _release("svc-f-53", "t2")
    index = _index((first, "Progressing"), (second, None))
    assert competitor(index, second) == "releases/svc-e-51"  # type: ignore[arg-type]
    assert competitor(index, first) is None  # type: ignore[arg-type]


def test_a_zone_id_with_and_without_its_prefix_is_one_zone() -> None:
    first = _release("svc-e-51", "t1", zone={"id": "/hostedzone/Z1"})
    second = _release("svc-f-53", "t2", zone={"id": "Z1"})
    index = _index((first, "Deploying"), (second, None))
    assert competitor(index, second) == "releases/svc-e-51"  # type: ignore[arg-type]


def test_an_older_release_retried_waits_for_a_newer_one_in_flight() -> None:
    older, newer = _release("svc-42", "t1", record="a"), _release("svc-44", "t2", record="b")
    index = _index((older, None), (newer, "Deploying"))  # same service
    assert competitor(index, older) == "releases/svc-44"  # type: ignore[arg-type]
    both_waiting = _index((older, None), (newer, "Pending"))
    assert competitor(both_waiting, older) is None  # type: ignore[arg-type]
    assert competitor(both_waiting, newer) == "releases/svc-42"  # type: ignore[arg-type]


def test_a_release_in_flight_or_newer_cancels_a_scale_down() -> None:
    done, newer = _release("svc-42", "t1", record="a"), _release("svc-43", "t2", record="b")
    assert successor(_index((done, "Succeeded"), (newer, None)), done) == "releases/svc-43"  # type: ignore[arg-type]
    older = _release("svc-41", "t0", record="c")
    assert successor(_index((done, "Succeeded"), (older, "Failed")), done) is None  # type: ignore[arg-type]
    assert successor(_index((done, "Succeeded"), (older, "Progressing")), done) == "releases/svc-41"  # type: ignore[arg-type]
