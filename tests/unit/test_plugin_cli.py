"""The plugin's command line behaves like kubectl's: global flags anywhere, output whole."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sprintops.cli.display import progress_panel
from sprintops.cli.plugin import UNBOUNDED, _table, build_parser, console_for


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "releases", "-o", "json", "status", "r1"],
        ["status", "r1", "-n", "releases", "-o", "json"],
        ["-n", "releases", "status", "r1", "-o", "json"],
        ["status", "-o", "json", "r1", "--namespace", "releases"],
    ],
)
def test_global_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.name, args.namespace, args.output) == (
        "status",
        "r1",
        "releases",
        "json",
    )


def test_flags_left_out_keep_their_defaults_and_a_flag_before_is_not_overwritten() -> None:
    args = build_parser().parse_args(["list", "-A"])
    assert (args.namespace, args.output, args.kubeconfig, args.context) == (
        None,
        "table",
        None,
        None,
    )
    args = build_parser().parse_args(["--context", "mgmt", "promote", "r1", "--force"])
    assert args.context == "mgmt" and args.force
    args = build_parser().parse_args(["-o", "wide", "list"])
    assert args.output == "wide"


def test_tables_print_every_cell_whole_off_a_terminal() -> None:
    out = io.StringIO()
    table = _table("NAME", "TIME", "NOTE")
    name = "document-service-sprint-42-with-a-name-as-long-as-they-come"
    note = "request-duration-p99: High: shift +60.5 [+57, +65] ms at 98%, mean ratio 1.61"
    table.add_row(name, "2026-11-26T13:39:22.678123Z", note)
    Console(file=out, width=UNBOUNDED).print(table)
    text = out.getvalue()
    assert name in text and "2026-11-26T13:39:22.678123Z" in text and note in text
    assert "…" not in text and len(text.splitlines()[1]) > 80


def test_text_from_the_cluster_is_printed_as_it_is_never_as_markup() -> None:
    said = "Tried to create resource record set [name='docs.', set-identifier='even'] [/]"
    for command in ("list", "status", "watch"):
        out = io.StringIO()
        console = console_for(command, out)
        table = _table("MESSAGE")
        table.add_row(said)
        console.print(table)
        console.print(said)
        assert out.getvalue().count(said) == 2, out.getvalue()
    obj = {
        "metadata": {"namespace": "releases", "name": "r"},
        "spec": {"sprint": 42, "traffic": {"steps": [10, 50, 100]}},
        "status": {"phase": "Progressing", "message": said},
    }
    out = io.StringIO()
    Console(file=out, width=400).print(progress_panel(obj))  # the demo's console: markup on
    assert said in out.getvalue()
