"""Shell completion for `kubectl sprint`, through kubectl's own (bash and zsh alike).

kubectl (1.26+) completes a plugin by running `kubectl_complete-<plugin>` from PATH with the
words typed so far, the last being the one to complete, and reads Cobra's `__complete`
answer: one candidate per line (`value<TAB>description`), then `:<directive>`. Candidates
come from the plugin's own parser, and release names from the cluster the flags name.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Callable

from sprintops.cli.plugin import PluginError, Session, build_parser

# Cobra's ShellCompDirective: 4 = NoFileComp (never fall back to file names).
NO_FILES = 4
# Commands that take a release name.
NAMED = ("status", "history", "watch", "pause", "resume", "abort", "promote")
GLOBAL_VALUES = ("--kubeconfig", "--context", "-n", "--namespace", "-o", "--output")
OUTPUTS = ("table", "wide", "json", "yaml")


def _commands() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help or "" for c in sub._choices_actions}


def candidates(words: list[str], names: Callable[[argparse.Namespace], list[str]]) -> list[str]:
    """What may come at the last of `words` (the partial word), given those before it."""
    *done, partial = words or [""]
    if done and done[-1] in ("-o", "--output"):
        return [o for o in OUTPUTS if o.startswith(partial)]
    if done and done[-1] in GLOBAL_VALUES:
        return []  # a path, a context or a namespace: the shell's business
    commands = _commands()
    positional = [w for i, w in enumerate(done) if not _is_flag_value(done, i)]
    command = next((w for w in positional if w in commands), None)
    if partial.startswith("-"):
        flags = ["--kubeconfig", "--context", "--namespace", "--output"]
        if command == "list":
            flags.append("--all-namespaces")
        if command == "promote":
            flags.append("--force")
        return [f for f in flags if f.startswith(partial)]
    if command is None:
        return [f"{c}\t{text}" for c, text in commands.items() if c.startswith(partial)]
    if command in NAMED and positional[-1] == command:
        try:
            args = build_parser().parse_known_args([*done, "x"])[0]
        except SystemExit:
            return []
        return [n for n in names(args) if n.startswith(partial)]
    return []


def _is_flag_value(words: list[str], i: int) -> bool:
    return words[i].startswith("-") or (i > 0 and words[i - 1] in GLOBAL_VALUES)


def release_names(args: argparse.Namespace, deadline: float = 3.0) -> list[str]:
    """The namespace's releases, or none if the cluster does not answer by `deadline`
    seconds: a TAB must not hang (the client's own retries would take a dozen)."""
    found: list[str] = []

    def read() -> None:
        with contextlib.suppress(PluginError):
            found.extend(sorted(r["metadata"]["name"] for r in Session(args, deadline).releases()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(deadline)
    return found if not reader.is_alive() else []


def main(argv: list[str] | None = None) -> int:
    for line in candidates(sys.argv[1:] if argv is None else argv, release_names):
        print(line)
    print(f":{NO_FILES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
