"""Change windows: whether traffic may increase now, and when it may next; pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sprintops.api import DAYS, Day, Window

# Two weeks ahead covers every weekly window, a DST change included.
_HORIZON_DAYS = 15


@dataclass(frozen=True)
class Closed:
    """Why traffic may not increase now."""

    message: str
    # Seconds until a window opens; None when none ever will (an unknown time zone).
    opens_in: float | None


def closed(windows: list[Window], now: dt.datetime) -> Closed | None:
    """None when a window is open now or none are set; otherwise why and for how long."""
    if not windows:
        return None
    soonest: tuple[float, Window] | None = None
    unknown: list[str] = []
    for window in windows:
        try:
            zone = ZoneInfo(window.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            unknown.append(window.time_zone)  # refused by the API; an older tzdata here
            continue
        if _open(window, now.astimezone(zone)):
            return None
        wait = _next_opening(window, now, zone)
        if soonest is None or wait < soonest[0]:
            soonest = (wait, window)
    if soonest is None:
        return Closed(f"change window time zone {unknown[0]!r} is unknown here", None)
    wait, window = soonest
    return Closed(f"outside change window {describe(window)}; next opens in {_human(wait)}", wait)


def describe(window: Window) -> str:
    """E.g. 'Mon-Fri 09:00-17:00 Europe/Berlin'."""
    return f"{_days(window.days)} {window.start}-{window.end} {window.time_zone}"


def _clock(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def _open(window: Window, local: dt.datetime) -> bool:
    start, end, now = _clock(window.start), _clock(window.end), local.time()
    today = DAYS[local.weekday()]
    if start < end:
        return today in window.days and start <= now < end
    # Past midnight: opened today, or yesterday and not yet closed.
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (today in window.days and now >= start) or (yesterday in window.days and now < end)


def _next_opening(window: Window, now: dt.datetime, zone: ZoneInfo) -> float:
    local = now.astimezone(zone)
    for ahead in range(_HORIZON_DAYS):
        day = local.date() + dt.timedelta(days=ahead)
        if DAYS[day.weekday()] not in window.days:
            continue
        opening = dt.datetime.combine(day, _clock(window.start), tzinfo=zone)
        if opening > now:
            return (opening - now).total_seconds()
    raise AssertionError("a weekly window opens within two weeks")  # days is never empty


def _days(days: list[Day]) -> str:
    """Consecutive days as a range: Mon-Fri, Sat,Sun; Mon,Wed."""
    picked = sorted({DAYS.index(d) for d in days})
    runs: list[list[int]] = []
    for index in picked:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ",".join(
        f"{DAYS[r[0]]}-{DAYS[r[-1]]}" if len(r) > 2 else ",".join(DAYS[i] for i in r) for r in runs
    )


def _human(wait: float) -> str:
    minutes = int(wait // 60)
    if minutes < 1:
        return f"{int(wait)}s"
    hours, minutes = divmod(minutes, 60)
    if hours >= 10 or (hours and not minutes):
        return f"{hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
