"""Go-style durations ("2s", "1m30s", "500ms") as the API accepts them; pure."""

from __future__ import annotations

import datetime as dt
import re

from sprintops.api import DURATION_PATTERN

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, with milliseconds (step timings are reported in ms)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
