"""A group's progress as the pages show it: counts, rate, ETA, failures grouped by error with
numbers masked, and the completions-over-time plot as inline SVG (drawn here, no JavaScript)."""

from __future__ import annotations

import collections
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from outpost_service.store.endpoints import ACTIVE_STATES
from outpost_service.ui.queries import RATE_WINDOW

#: The order states are shown in.
STATES = ("queued", "dispatched", "running", "success", "failed", "cancelled", "lost", "received")

_ID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def mask(message: str) -> str:
    """``message`` with ids and numbers replaced, so failures that differ only by them group:
    ``ValueError: bad value 42`` -> ``ValueError: bad value <n>``."""
    return _NUMBER.sub("<n>", _HEX.sub("<hex>", _ID.sub("<id>", message)))


def error_of(result: bytes | None) -> tuple[str, str]:
    """(type, first line of the message) of a stored failed result."""
    if result is None:
        return ("?", "no result stored")
    try:
        error = json.loads(bytes(result)).get("error") or {}
    except (ValueError, AttributeError):
        return ("?", "unreadable result")
    lines = str(error.get("message", "")).strip().splitlines()
    return (str(error.get("type") or error.get("reason") or "?"), (lines or [""])[0][:300])


@dataclass
class FailureGroup:
    type: str
    message: str  # masked
    count: int
    task_ids: list[str]


@dataclass
class Progress:
    """One group's numbers, from its task rows (latest attempts are counted)."""

    states: dict[str, int]
    total: int
    retried: int
    rate: float  # completions per second over the last RATE_WINDOW seconds
    eta: float | None  # seconds, None when nothing is left or nothing completes
    completions: list[float] = field(default_factory=list)  # completion times, sorted
    started: float = 0.0
    failures: list[FailureGroup] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.total - self.unfinished

    @property
    def unfinished(self) -> int:
        return sum(self.states.get(s, 0) for s in ACTIVE_STATES)


def rate_and_eta(recent: int, started: float, unfinished: int) -> tuple[float, float | None]:
    """Completions per second over the last window (or since ``started`` when younger) and the
    seconds the ``unfinished`` tasks need at that rate."""
    span = min(RATE_WINDOW, max(time.time() - started, 1.0))
    rate = recent / span
    eta = unfinished / rate if unfinished and rate > 0 else None
    return rate, eta


def progress_of(rows: Sequence[Any]) -> Progress:
    """The progress of a group from :func:`..queries.group_rows`."""
    latest = [r for r in rows if r.retried_by is None]
    states = collections.Counter(r.state for r in latest)
    completions = sorted(r.completed_at for r in rows if r.completed_at is not None)
    started = min((r.created_at for r in rows), default=time.time())
    since = time.time() - RATE_WINDOW
    recent = sum(1 for t in completions if t >= since)
    unfinished = sum(states.get(s, 0) for s in ACTIVE_STATES)
    rate, eta = rate_and_eta(recent, started, unfinished)
    return Progress(
        states=dict(states),
        total=len(latest),
        retried=len(rows) - len(latest),
        rate=rate,
        eta=eta,
        completions=completions,
        started=started,
        failures=failures_of(latest),
    )


def failures_of(latest: Iterable[Any], examples: int = 5) -> list[FailureGroup]:
    """The failed latest attempts grouped by error type and masked message, most frequent
    first."""
    grouped: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for row in latest:
        if row.state in ("failed", "lost"):
            kind, message = error_of(row.result)
            grouped[kind, mask(message)].append(row.task_id)
    ranked = sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))
    return [FailureGroup(k, m, len(ids), ids[:examples]) for (k, m), ids in ranked]


def duration(seconds: float | None) -> str:
    """``seconds`` for people: ``45 s``, ``3 min 20 s``, ``2 h 05 min``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def clock(at: float | None) -> str:
    """A moment as UTC wall-clock text."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}"


def completions_svg(completions: Sequence[float], started: float, total: int) -> Markup:
    """Completed tasks over time (a step line from the first submit to now) as inline SVG."""
    width, height, pad = 640, 180, 34
    now = max(time.time(), completions[-1] if completions else started)
    span = max(now - started, 1e-3)
    top = max(total, 1)

    def x(t: float) -> float:
        return pad + (t - started) / span * (width - 2 * pad)

    def y(n: int) -> float:
        return height - pad - n / top * (height - 2 * pad)

    points = [f"{x(started):.1f},{y(0):.1f}"]
    for count, at in enumerate(completions, start=1):
        points.append(f"{x(at):.1f},{y(count - 1):.1f}")
        points.append(f"{x(at):.1f},{y(count):.1f}")
    points.append(f"{x(now):.1f},{y(len(completions)):.1f}")
    label = f"{len(completions)} of {total} completed over {duration(span)}"
    parts = [
        f'<svg class="plot" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line x1="{pad}" y1="{y(0):.1f}" x2="{width - pad}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<line x1="{pad}" y1="{y(top):.1f}" x2="{width - pad}" y2="{y(top):.1f}" '
        'stroke="#ccc" stroke-dasharray="4 4"/>',
        f'<polyline fill="none" stroke="#2a6fdb" stroke-width="2" points="{" ".join(points)}"/>',
        f'<text x="{pad}" y="{height - 10}" font-size="11">{escape(clock(started)[11:19])}</text>',
        f'<text x="{width - pad}" y="{height - 10}" font-size="11" text-anchor="end">'
        f"{escape(clock(now)[11:19])} UTC</text>",
        f'<text x="4" y="{y(top) + 4:.1f}" font-size="11">{top}</text>',
        f'<text x="4" y="{y(0) + 4:.1f}" font-size="11">0</text>',
        "</svg>",
    ]
    return Markup("".join(parts))


def sparkline_svg(buckets: Sequence[int], seconds: float) -> Markup:
    """Completions per bucket (oldest first) as a small bar chart, for the groups list."""
    width, height = 120, 24
    top = max(max(buckets, default=0), 1)
    step = width / max(len(buckets), 1)
    bars = "".join(
        f'<rect x="{i * step:.1f}" y="{height - n / top * height:.1f}" '
        f'width="{max(step - 0.5, 0.5):.1f}" height="{n / top * height:.1f}" fill="#2a6fdb"/>'
        for i, n in enumerate(buckets)
        if n
    )
    label = f"{sum(buckets)} completed in the last {duration(seconds)}"
    return Markup(
        f'<svg class="spark" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>"
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#ccc"/>'
        f"{bars}</svg>"
    )
