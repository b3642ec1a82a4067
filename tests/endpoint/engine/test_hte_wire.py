"""The engine's frames: envelopes split into a JSON header and raw payload frames and back, and
the worker pipe's one-write messages, checked against the reader multiprocessing gives us."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from outpost.protocol import ErrorInfo, ResultEnvelope, TaskEnvelope, TaskState
from outpost_endpoint.engine.high_throughput import wire
from outpost_endpoint.engine.high_throughput.worker import frame_socket, send_frames


def test_a_task_survives_the_header_and_its_payload_frames_unchanged() -> None:
    task = TaskEnvelope(
        task_id="t1", function_id="f" * 64, function=b"\x00fn", args=os.urandom(70_000),
        endpoint_id="ep", task_group_id="g", resource_specification={"walltime": 5},
        created_at=12.5, issued_at=13.0, sig="c2ln",
    )  # fmt: skip
    header = wire.task_header(task, walltime=5.0, received=14.0, nodes=["n1"])
    fields = wire.loads(header)
    assert (fields["walltime"], fields["received"], fields["nodes"]) == (5.0, 14.0, ["n1"])
    assert b"fn" not in header and len(header) < 1000  # the payloads are not in the header
    assert wire.task_from_header(fields, task.function, task.args) == task


@pytest.mark.parametrize(
    "result",
    [
        ResultEnvelope("t1", "ep", TaskState.SUCCESS, value=os.urandom(50_000), timing={"a": 1.0}),
        ResultEnvelope("t2", "ep", TaskState.SUCCESS, value=b""),  # an empty value is a value
        ResultEnvelope(
            "t3",
            "ep",
            TaskState.FAILED,
            error=ErrorInfo("E", "m", "exception", "tb", b"\x80"),
            node="n",
            worker="w",
        ),
    ],
)
def test_a_result_survives_its_frames_unchanged(result: ResultEnvelope) -> None:
    header, value = wire.result_frames(result)
    assert result.value is None or result.value not in header or result.value == b""
    assert wire.result_from_frames(header, value) == result


def test_send_frames_writes_messages_recv_bytes_reads() -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    frames = [b"header", b"", os.urandom(100_000), memoryview(b"tail")]
    sender = frame_socket(ours)
    try:
        send_frames(sender, frames)
        assert [theirs.recv_bytes() for _ in frames] == [bytes(f) for f in frames]
        assert not theirs.poll(0)  # nothing more: four messages, one write
    finally:
        sender.close()
        ours.close()
        theirs.close()
