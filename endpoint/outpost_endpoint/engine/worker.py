"""The main loop of one worker process (started with the ``spawn`` context).

The protocol over the pipe is deliberately tiny: the engine sends ``(task JSON bytes, received
time)``, the worker answers with the result's JSON bytes; ``None`` asks the worker to exit.
Using the envelopes' own wire form means nothing but :mod:`outpost.protocol` crosses the pipe.
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing.connection import Connection

from outpost.protocol import TaskEnvelope
from outpost_endpoint.execution import run_task


def worker_main(conn: Connection, payload_limit: int | None) -> None:
    """Run tasks from ``conn`` until told to stop or the engine goes away."""
    # The daemon's SIGTERM handling belongs to the daemon; a worker lives until its pipe closes
    # or the engine kills it, so a Ctrl-C in a foreground endpoint does not kill running tasks
    # before the engine decides to.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Like `python -c`, make the working directory (where the endpoint was started) importable:
    # functions pickled by reference to a module of the user's project then load here.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        body, received = message
        result = run_task(TaskEnvelope.from_bytes(body), received, payload_limit=payload_limit)
        try:
            conn.send_bytes(result.to_bytes())
        except (BrokenPipeError, OSError):
            return
