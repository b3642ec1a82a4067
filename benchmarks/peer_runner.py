"""Run one benchmark round on a peer (Parsl, Dask or Ray) inside that peer's own venv.

This file is executed as a script by ``benchmarks/.venvs/<peer>/bin/python`` and must not import
Outpost (the peer environments do not have it).  One invocation is one *run*: it starts the peer
from scratch (cold start: from building the executor to the first result, imports excluded),
runs each requested task mix on the warm executor, optionally measures sequential round trips,
shuts down and prints one JSON object on the last line of stdout.  The same mixes are run
through Outpost's engine by :mod:`benchmarks.engine_alone`, which defines them identically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any


def noop() -> None:
    return None


def sleep10ms() -> None:
    import time  # imported here: Parsl ships ``__main__`` functions by value, without globals

    time.sleep(0.01)


def arg_size(data: bytes) -> int:
    return len(data)


def mix_calls(mix: str) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The function and arguments of one task of ``mix`` (same definitions as Outpost's)."""
    if mix == "noop":
        return noop, ()
    if mix == "sleep10ms":
        return sleep10ms, ()
    if mix == "arg1mb":
        return arg_size, (os.urandom(1024 * 1024),)
    raise SystemExit(f"unknown mix {mix!r}: choose noop, sleep10ms or arg1mb")


class Peer:
    """A started peer: ``submit(fn, *args)`` returns something ``wait_all`` understands."""

    def __init__(self, workers: int, run_dir: str) -> None:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait_all(self, handles: list[Any]) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ParslPeer(Peer):
    def __init__(self, workers: int, run_dir: str) -> None:
        import parsl
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider

        config = Config(
            executors=[
                HighThroughputExecutor(
                    label="htex",
                    address="127.0.0.1",
                    max_workers_per_node=workers,
                    cores_per_worker=1,
                    provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
                )
            ],
            run_dir=run_dir,
            strategy="none",
        )
        self._parsl = parsl
        self._dfk = parsl.load(config)
        self._apps: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        app = self._apps.get(fn)
        if app is None:
            app = self._apps[fn] = self._parsl.python_app(fn, executors=["htex"])
        return app(*args)

    def wait_all(self, handles: list[Any]) -> list[Any]:
        return [h.result() for h in handles]

    def close(self) -> None:
        self._dfk.cleanup()


class DaskPeer(Peer):
    def __init__(self, workers: int, run_dir: str) -> None:
        from distributed import Client, LocalCluster

        self._cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=run_dir,
        )
        self._client = Client(self._cluster)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def wait_all(self, handles: list[Any]) -> list[Any]:
        return list(self._client.gather(handles))

    def close(self) -> None:
        self._client.close()
        self._cluster.close()


class RayPeer(Peer):
    def __init__(self, workers: int, run_dir: str) -> None:
        import ray

        self._ray = ray
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=run_dir,
        )
        self._remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        remote = self._remotes.get(fn)
        if remote is None:
            remote = self._remotes[fn] = self._ray.remote(fn)
        return remote.remote(*args)

    def wait_all(self, handles: list[Any]) -> list[Any]:
        return list(self._ray.get(handles))

    def close(self) -> None:
        self._ray.shutdown()


PEERS: dict[str, type[Peer]] = {"parsl": ParslPeer, "dask": DaskPeer, "ray": RayPeer}


def version(peer: str) -> str:
    module = {"parsl": "parsl", "dask": "distributed", "ray": "ray"}[peer]
    return str(__import__(module).__version__)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Ray's socket paths must stay short, so its temp dir lives under /tmp.
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.peer}-", dir="/tmp") as run_dir:
        started = time.perf_counter()
        peer = PEERS[args.peer](args.workers, run_dir)
        try:
            peer.wait_all([peer.submit(noop)])
            cold_start = time.perf_counter() - started
            mixes: dict[str, Any] = {}
            for spec in args.mix:
                mix, count = spec.split("=")
                fn, fn_args = mix_calls(mix)
                peer.wait_all([peer.submit(fn, *fn_args) for _ in range(args.workers)])  # warm
                begin = time.perf_counter()
                handles = [peer.submit(fn, *fn_args) for _ in range(int(count))]
                peer.wait_all(handles)
                elapsed = time.perf_counter() - begin
                mixes[mix] = {"tasks": int(count), "seconds": elapsed, "rate": int(count) / elapsed}
            latency: dict[str, float] = {}
            if args.round_trips:
                samples = []
                for _ in range(args.round_trips):
                    begin = time.perf_counter()
                    peer.wait_all([peer.submit(noop)])
                    samples.append((time.perf_counter() - begin) * 1000)
                latency = {q: percentile(samples, v) for q, v in (("p50", 0.5), ("p95", 0.95))}
                latency["p99"] = percentile(samples, 0.99)
        finally:
            peer.close()
    return {
        "peer": args.peer,
        "version": version(args.peer),
        "workers": args.workers,
        "cold_start_s": cold_start,
        "mixes": mixes,
        "round_trip_ms": latency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mix", action="append", default=[], help="MIX=COUNT, repeatable")
    parser.add_argument("--round-trips", type=int, default=0)
    args = parser.parse_args()
    result = run(args)
    sys.stdout.flush()
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
