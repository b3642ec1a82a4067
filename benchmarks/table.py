"""Render ``benchmarks/results/*.json`` as the Markdown summary table of the README.

Run: ``.venv/bin/python -m benchmarks.table`` (prints; paste into ``benchmarks/README.md``).
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.common import RESULTS


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _m(stats: dict[str, Any] | None, digits: int = 0) -> str:
    if not stats or stats.get("median") is None:
        return "n/a"
    return f"{stats['median']:,.{digits}f} ({stats['min']:,.{digits}f}-{stats['max']:,.{digits}f})"


def rows() -> list[tuple[str, str, str]]:
    """(measure, figure, comparison) rows from whatever result files exist."""
    out: list[tuple[str, str, str]] = []
    engine = _load("engine_alone")
    if engine:
        systems = engine["systems"]
        ours = [s for s in systems if s.startswith("outpost-")]
        for mix in ("noop", "sleep10ms", "arg1mb"):
            n = engine["tasks"][mix]
            for system in systems:
                ratio = ""
                if system in ours:
                    parts = []
                    for peer in (s for s in systems if s not in ours):
                        r = engine["ratios"].get(f"{system}/{peer}/{mix}", {})
                        if r.get("median") is not None:
                            parts.append(f"{r['median']:.2f}x {peer}")
                    ratio = ", ".join(parts)
                out.append(
                    (
                        f"engine alone, {n:,} {mix}: {system}",
                        _m(systems[system][mix]) + " tasks/s",
                        ratio,
                    )
                )
        for system, row in systems.items():
            out.append(
                (f"cold start to first result: {system}", _m(row["cold_start_s"], 2) + " s", "")
            )
    e2e = _load("end_to_end")
    if e2e:
        ratio = e2e["ratio_outpost_to_raw_pika"]
        out.append(
            (
                f"end to end, {e2e['tasks']:,} no-ops, one client",
                _m(e2e["outpost_tasks_per_s"]) + " tasks/s",
                f"{ratio['median']:.3f}x raw pika ({_m(e2e['raw_pika_round_trips_per_s'])}/s)",
            )
        )
        out.append(
            (
                "end to end, time to last result",
                _m(e2e["outpost_seconds_to_last_result"], 2) + " s",
                "",
            )
        )
    lat = _load("latency")
    if lat:
        for q in ("p50", "p95", "p99"):
            parsl = lat["parsl_engine_only_ms"].get(q)
            out.append(
                (
                    f"round trip {q}, {lat['round_trips']} sequential, end to end",
                    _m(lat["outpost_end_to_end_ms"][q], 1) + " ms",
                    f"Parsl engine-only {_m(parsl, 1)} ms" if parsl else "",
                )
            )
    cold = _load("cold_start")
    if cold:
        out.append(
            (
                "`outpost-endpoint start` to first result",
                _m(cold["endpoint_start_to_first_result_s"], 2) + " s",
                "",
            )
        )
    big = _load("scale")
    if big:
        n = f"{big['tasks']:,} queued"
        out.append((f"scale, {n}: drain rate", _m(big["drain_tasks_per_s"]) + " tasks/s", ""))
        out.append((f"scale, {n}: service peak RSS", _m(big["service_peak_rss_mb"]) + " MB", ""))
        out.append(
            (
                f"scale, {n}: endpoint daemon peak RSS",
                _m(big["endpoint_daemon_peak_rss_mb"]) + " MB",
                "",
            )
        )
    out += _store_rows(_load("store_scale"))
    fair = _load("fairness")
    if fair:
        quiet, loaded = fair["quiet_ms"], fair["under_load_ms"]
        out.append(
            (
                f"fairness: user B's GET /v1/endpoints + /health while A holds "
                f"{fair['hostile_long_polls']} long-polls + {fair['hostile_half_sent']} "
                "half-sent requests",
                f"p50 {loaded['p50']:.1f} / p99 {loaded['p99']:.1f} ms "
                f"({fair['under_load_failed']} failed)",
                f"quiet service p50 {quiet['p50']:.1f} / p99 {quiet['p99']:.1f} ms",
            )
        )
    return out


def _store_rows(store: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """Per backend: each call's p50/p95/p99 with N task rows, against the empty store."""
    if not store:
        return []
    out: list[tuple[str, str, str]] = []
    for backend, data in store["backends"].items():
        where = f"{store['rows']:,} task rows, {backend}"
        for name, full in data["full"]["http_ms"].items():
            empty = data["empty"]["http_ms"][name]
            ratio = data["ratio_full_to_empty"][name]
            out.append(
                (
                    f"{where}: {name}",
                    f"p50 {full['p50']:.1f} / p95 {full['p95']:.1f} / p99 {full['p99']:.1f} ms",
                    f"{ratio['p50']:.2f}x / {ratio['p95']:.2f}x empty store (p50 "
                    f"{empty['p50']:.1f}, p95 {empty['p95']:.1f} ms)",
                )
            )
        sweeps = data["full"]["store"]
        for name in ("expiry: tasks.due", "endpoints.outstanding_counts"):
            if name in sweeps:
                empty_ms = data["empty"]["store"][name]["median_ms"]
                out.append(
                    (
                        f"{where}: {name} (in process)",
                        f"{sweeps[name]['median_ms']:.2f} ms",
                        f"empty store {empty_ms:.2f} ms",
                    )
                )
        purge = sweeps.get("retention: tasks.purge_expired (one day due)")
        if purge:
            out.append(
                (
                    f"{where}: retention sweep of one day ({purge['deleted']:,} tasks)",
                    f"{purge['ms']:,.0f} ms in {purge.get('batches', 1)} transaction(s)",
                    f"longest {purge.get('longest_batch_ms', purge['ms']):,.0f} ms",
                )
            )
    return out


def main() -> None:
    print("| measure | median (min-max) | same-run comparison |")
    print("|---|---|---|")
    for measure, figure, comparison in rows():
        print(f"| {measure} | {figure} | {comparison} |")


if __name__ == "__main__":
    main()
