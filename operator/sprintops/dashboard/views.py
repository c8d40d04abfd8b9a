"""The dashboard's HTML fragments and SVG charts, rendered on the server from SprintRelease
objects. Pure: strings in, strings out, everything escaped, no script and no I/O."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from sprintops.api import CLUSTERS, CheckResult, SprintReleaseStatus

WIDTH, HEIGHT, PAD = 560, 180, 52
VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "hold": "#9a6700"}
PHASE_CLASS = {
    "Succeeded": "ok",
    "RolledBack": "bad",
    "Failed": "bad",
    "RollingBack": "warn",
    "Paused": "warn",
}


@dataclass(frozen=True)
class Seen:
    """One observation of the share that arrived, kept by the server as it watches."""

    time: str
    even: float
    odd: float


@dataclass(frozen=True)
class Deployment:
    """A workload cluster's Deployment of the service, as the user's kubeconfig sees it."""

    sprint: str
    image: str
    ready: int
    desired: int


def _when(text: str | None) -> dt.datetime | None:
    """A time from status, or None if it does not parse (a status written by hand, or under
    an older schema); a time without a zone is UTC."""
    try:
        parsed = dt.datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _status(obj: dict[str, Any]) -> SprintReleaseStatus:
    return SprintReleaseStatus.model_validate(obj.get("status") or {})


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def weight_bar(weight: int | None, label: str) -> str:
    w = max(0, min(100, weight or 0))
    return (
        f'<svg class="bar" viewBox="0 0 100 8" role="img" '
        f'aria-label="{_e(label)}: {w}% on the new cluster">'
        f'<rect class="track" width="100" height="8" rx="3"/>'
        f'<rect class="fill" width="{w}" height="8" rx="3"/></svg>'
    )


def releases_table(items: Sequence[dict[str, Any]]) -> str:
    if not items:
        return '<p class="empty">No SprintReleases.</p>'
    rows = []
    for obj in sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        meta, st = obj["metadata"], _status(obj)
        ns, name = meta["namespace"], meta["name"]
        phase = st.phase or "New"
        steps = len(obj["spec"]["traffic"].get("steps") or [10, 50, 100])
        done = (st.step_index or 0) + 1 if st.step_started_at or st.step_index else 0
        rows.append(
            "<tr>"
            f'<td><a href="/releases/{_e(ns)}/{_e(name)}">{_e(name)}</a></td>'
            f"<td>{_e(ns)}</td><td>{_e(obj['spec']['sprint'])}</td>"
            f"<td>{_e(st.target_cluster or '-')}</td>"
            f'<td><span class="phase {PHASE_CLASS.get(phase, "")}">{_e(phase)}</span></td>'
            f"<td>{done}/{steps}</td>"
            f"<td>{weight_bar(st.target_weight, name)} {st.target_weight or 0}%</td>"
            "</tr>"
        )
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("Release", "Namespace", "Sprint", "Target", "Phase", "Step", "Weight")
    )
    return (
        f'<table class="releases"><caption>SprintReleases</caption><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _x(t: dt.datetime, start: dt.datetime, end: dt.datetime) -> float:
    span = max((end - start).total_seconds(), 1.0)
    return PAD + (WIDTH - 2 * PAD) * (t - start).total_seconds() / span


def _y(value: float, low: float, high: float) -> float:
    span = high - low or 1.0
    return HEIGHT - PAD + (HEIGHT - 2 * PAD) * -(value - low) / span


def weights_chart(obj: dict[str, Any], seen: Sequence[Seen], now: dt.datetime) -> str:
    """The new cluster's weight as set at each step (a line, one vertex per change) and the
    share that arrived (dots), over the release's time so far."""
    st = _status(obj)
    target = st.target_cluster or "even"
    steps = [(t, s.weight) for s in st.steps if (t := _when(s.started_at)) is not None]
    if not steps:
        return '<p class="empty">No step yet: the weights have not moved.</p>'
    start = min(t for t, _ in steps)
    end = max(now, *(t for t, _ in steps), start + dt.timedelta(seconds=1))
    points: list[tuple[float, float]] = [(_x(start, start, end), _y(0, 0, 100))]
    for t, weight in sorted(steps, key=lambda p: p[0]):
        at = _x(t, start, end)
        points += [(at, points[-1][1]), (at, _y(weight, 0, 100))]
    final = st.weights.of(target) if st.weights else st.steps[-1].weight
    points.append((_x(end, start, end), _y(final, 0, 100)))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = []
    for s in seen:
        t = _when(s.time)
        if t is not None and start <= t <= end:
            share = s.even if target == "even" else s.odd
            dots.append(
                f'<circle class="observed" cx="{_x(t, start, end):.1f}" '
                f'cy="{_y(share, 0, 100):.1f}" r="3"><title>{share:.1f}% observed at '
                f"{_e(s.time)}</title></circle>"
            )
    marks = "".join(
        f'<circle class="set" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in points[1:-1]
    )
    label = f"Weight on {target} over time: set at each step (line), observed (dots)"
    return _svg(
        label,
        _axes(0, 100, "%")
        + f'<polyline class="set" points="{line}" fill="none"/>'
        + marks
        + "".join(dots)
        + _legend([("set weight", "set"), ("observed share", "observed")]),
    )


def check_chart(metric: str, results: Sequence[CheckResult]) -> str:
    """One check's values over time, its threshold, and each round's verdict."""
    timed = [(t, r) for r in results if (t := _when(r.time)) is not None]
    valued = [(t, r) for t, r in timed if r.value is not None and math.isfinite(r.value)]
    if not valued:
        return _svg(f"{metric}: no values yet", f'<text x="{PAD}" y="{HEIGHT / 2}">no data</text>')
    times = [t for t, _ in timed]
    start, end = min(times), max(*times, min(times) + dt.timedelta(seconds=1))
    bounds = _threshold_values(results[-1].threshold)
    values = [r.value for _, r in valued if r.value is not None] + bounds
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 1, high + 1
    body = _axes(low, high, "")
    for bound in bounds:
        y = _y(bound, low, high)
        body += (
            f'<line class="threshold" x1="{PAD}" x2="{WIDTH - PAD}" y1="{y:.1f}" y2="{y:.1f}">'
            f"<title>threshold {_e(results[-1].threshold)}</title></line>"
        )
    for t, r in valued:
        x, y = _x(t, start, end), _y(r.value or 0.0, low, high)
        colour = VERDICT_COLOURS.get(r.verdict, "#57606a")
        body += (
            f'<circle class="verdict {r.verdict}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
            f'fill="{colour}"><title>{_e(r.time)}: {r.value:.4g} ({r.verdict})</title></circle>'
        )
    label = f"{metric}: values over time against threshold {results[-1].threshold}"
    return _svg(label, body)


def _threshold_values(threshold: str) -> list[float]:
    out = []
    for part in threshold.split(" and "):
        words = part.split()
        if len(words) == 2 and words[0] in (">=", "<="):
            try:
                bound = float(words[1])
            except ValueError:
                continue
            if math.isfinite(bound):
                out.append(bound)
    return out


def _axes(low: float, high: float, unit: str) -> str:
    top, bottom = _y(high, low, high), _y(low, low, high)
    return (
        f'<line class="axis" x1="{PAD}" x2="{PAD}" y1="{top:.1f}" y2="{bottom:.1f}"/>'
        f'<line class="axis" x1="{PAD}" x2="{WIDTH - PAD}" y1="{bottom:.1f}" y2="{bottom:.1f}"/>'
        f'<text class="tick" x="{PAD - 4}" y="{top + 4:.1f}" text-anchor="end">'
        f"{high:.3g}{unit}</text>"
        f'<text class="tick" x="{PAD - 4}" y="{bottom:.1f}" text-anchor="end">'
        f"{low:.3g}{unit}</text>"
    )


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    out = ""
    for i, (text, cls) in enumerate(entries):
        x = PAD + i * 140
        out += (
            f'<circle class="{cls} legend" cx="{x}" cy="12" r="4"/>'
            f'<text class="legend" x="{x + 8}" y="16">{_e(text)}</text>'
        )
    return out


def _svg(label: str, body: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>{body}</svg>"
    )


def release_view(
    obj: dict[str, Any],
    deployments: dict[str, Deployment | str | None],
    events: Sequence[dict[str, Any]],
    seen: Sequence[Seen],
    now: dt.datetime,
) -> str:
    """One release: both clusters, the step timeline, the charts, conditions and Events."""
    st = _status(obj)
    meta = obj["metadata"]
    phase = st.phase or "New"
    clusters = "".join(_cluster_card(c, deployments.get(c), _weight(st, c)) for c in CLUSTERS)
    steps = "".join(
        f"<tr><td>{i}</td><td>{s.weight}%</td><td>{_e(s.started_at)}</td>"
        f"<td>{_e(s.baked_from or '-')}</td><td>{_e(s.completed_at or '-')}</td>"
        f"<td>{_verdict_of(st, i - 1)}</td></tr>"
        for i, s in enumerate(st.steps, 1)
    )
    by_metric: dict[str, list[CheckResult]] = {}
    for r in st.analysis:
        by_metric.setdefault(r.metric, []).append(r)
    checks = "".join(
        f'<figure class="check"><figcaption>{_e(m)}</figcaption>{check_chart(m, rs)}</figure>'
        for m, rs in by_metric.items()
    )
    conditions = "".join(
        f"<tr><td>{_e(c.type)}</td><td>{_e(c.status)}</td><td>{_e(c.reason)}</td>"
        f"<td>{_e(c.message)}</td></tr>"
        for c in st.conditions
    )
    event_rows = "".join(
        f"<tr><td>{_e(e.get('time') or '')}</td><td>{_e(e.get('type') or '')}</td>"
        f"<td>{_e(e.get('reason') or '')}</td><td>{_e(e.get('message') or '')}</td></tr>"
        for e in events
    )
    observed = st.observed_traffic
    seen_text = (
        f"observed even {observed.even:.1f}% / odd {observed.odd:.1f}%"
        if observed and observed.even is not None and observed.odd is not None
        else "observed: -"
    )
    weights = f"set even {st.weights.even}% / odd {st.weights.odd}%" if st.weights else "set: -"
    return (
        f'<section aria-labelledby="summary"><h2 id="summary">{_e(meta["namespace"])}/'
        f"{_e(meta['name'])}</h2>"
        f'<p><span class="phase {PHASE_CLASS.get(phase, "")}">{_e(phase)}</span> '
        f"sprint {_e(obj['spec']['sprint'])}, step {_e(st.step or '-')}, {weights}, "
        f'{seen_text}</p><p class="message">{_e(st.message or "")}</p></section>'
        f'<section aria-labelledby="clusters"><h2 id="clusters">Clusters</h2>'
        f'<div class="clusters">{clusters}</div></section>'
        f'<section aria-labelledby="weights"><h2 id="weights">Weights</h2>'
        f'<figure id="weight-chart">{weights_chart(obj, seen, now)}</figure></section>'
        f'<section aria-labelledby="steps"><h2 id="steps">Steps</h2><table><thead><tr>'
        '<th scope="col">Step</th><th scope="col">Weight</th><th scope="col">Started</th>'
        '<th scope="col">Traffic arrived, bake from</th><th scope="col">Completed</th>'
        f'<th scope="col">Verdict</th></tr></thead><tbody>{steps}</tbody></table></section>'
        f'<section aria-labelledby="checks"><h2 id="checks">Checks</h2>'
        f'<div class="checks">{checks or "<p>No checks yet.</p>"}</div></section>'
        f'<section aria-labelledby="conditions"><h2 id="conditions">Conditions</h2><table>'
        '<thead><tr><th scope="col">Type</th><th scope="col">Status</th>'
        '<th scope="col">Reason</th><th scope="col">Message</th></tr></thead>'
        f"<tbody>{conditions}</tbody></table></section>"
        f'<section aria-labelledby="events"><h2 id="events">Events</h2><table><thead><tr>'
        '<th scope="col">Time</th><th scope="col">Type</th><th scope="col">Reason</th>'
        f'<th scope="col">Message</th></tr></thead><tbody>{event_rows}</tbody></table></section>'
    )


def _weight(st: SprintReleaseStatus, cluster: str) -> int | None:
    """The cluster's weight now: before any step, all on the previous cluster."""
    if st.weights is None:
        return 100 if cluster == st.previous_cluster else None
    return st.weights.of(cluster)  # type: ignore[arg-type]


def _verdict_of(st: SprintReleaseStatus, index: int) -> str:
    if index < len(st.steps) and st.steps[index].completed_at:
        return "passed"
    rounds = [r for r in st.analysis if r.step_index == index]
    return _e(rounds[-1].verdict) if rounds else "-"


def _cluster_card(cluster: str, seen: Deployment | str | None, weight: int | None) -> str:
    badge = f'<span class="live">live, {weight}%</span>' if weight else ""
    if isinstance(seen, Deployment):
        body = (
            f"<dl><dt>Sprint</dt><dd>{_e(seen.sprint)}</dd><dt>Image</dt>"
            f"<dd><code>{_e(seen.image)}</code></dd><dt>Ready</dt>"
            f"<dd>{seen.ready}/{seen.desired}</dd></dl>"
        )
    else:
        body = f"<p>{_e(seen or 'no Deployment of the service')}</p>"
    return f'<article class="cluster"><h3>{_e(cluster)} {badge}</h3>{body}</article>'
