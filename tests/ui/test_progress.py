"""The numbers the dashboard shows: masked error messages, grouping, rate/ETA, the plot."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from outpost_service.ui.progress import (
    completions_svg,
    duration,
    failures_of,
    mask,
    progress_of,
    rate_and_eta,
    sparkline_svg,
)


def test_numbers_and_ids_are_masked() -> None:
    assert mask("bad value 42") == "bad value <n>"
    assert mask("took 3.5 s at 0xdeadBEEF") == "took <n> s at <hex>"
    assert (
        mask("task 0b4c8a2e-7f53-4d55-9d0e-2a7cbd4cf9a1 failed twice") == "task <id> failed twice"
    )


def row(task_id: str, state: str, message: str | None = None, **times: float | None) -> object:
    result = None
    if message is not None:
        result = json.dumps({"error": {"type": "ValueError", "message": message}}).encode()
    return SimpleNamespace(
        task_id=task_id,
        state=state,
        result=result,
        retried_by=times.pop("retried_by", None),
        created_at=times.get("created_at", time.time() - 10),
        completed_at=times.get("completed_at"),
    )


def test_failures_group_by_masked_message_most_frequent_first() -> None:
    rows = [
        row("a", "failed", "bad value 1"),
        row("b", "failed", "bad value 2\nmore lines"),
        row("c", "failed", "disk full"),
        row("d", "success"),
        row("e", "lost", "bad value 3"),
    ]
    groups = failures_of(rows)
    assert [(g.type, g.message, g.count) for g in groups] == [
        ("ValueError", "bad value <n>", 3),
        ("ValueError", "disk full", 1),
    ]
    assert groups[0].task_ids == ["a", "b", "e"]


def test_progress_counts_latest_attempts_and_estimates() -> None:
    now = time.time()
    rows = [
        row("a", "failed", "x", retried_by="b", completed_at=now - 5),
        row("b", "success", completed_at=now - 2),
        row("c", "running"),
        row("d", "queued"),
    ]
    shown = progress_of(rows)
    assert shown.states == {"success": 1, "running": 1, "queued": 1}
    assert (shown.total, shown.retried, shown.unfinished, shown.finished) == (3, 1, 2, 1)
    assert shown.rate > 0 and shown.eta is not None and shown.eta > 0
    assert rate_and_eta(0, now - 30, 5) == (0.0, None)
    assert rate_and_eta(10, now - 100, 0)[1] is None


def test_durations_read_like_a_person_writes_them() -> None:
    assert [duration(s) for s in (None, 4.4, 200, 7500)] == ["-", "4 s", "3 min 20 s", "2 h 05 min"]


def test_the_plot_is_valid_svg_with_one_step_per_completion() -> None:
    start = time.time() - 10
    svg = ET.fromstring(str(completions_svg([start + 1, start + 2, start + 4], start, 5)))
    (line,) = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(line.get("points", "").split()) == 2 + 2 * 3
    assert "3 of 5 completed" in (svg.findtext("{http://www.w3.org/2000/svg}title") or "")


def test_the_sparkline_draws_one_bar_per_busy_bucket() -> None:
    svg = ET.fromstring(str(sparkline_svg([0, 2, 0, 4], 40)))
    bars = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert [float(b.get("height", 0)) for b in bars] == [12.0, 24.0]
    title = svg.findtext("{http://www.w3.org/2000/svg}title") or ""
    assert "6 completed in the last 40 s" in title
