"""Publishing batches to RabbitMQ and waiting for the batch's publisher confirms.

Why its own I/O thread: the hot paths (a 10,000-task submit, an endpoint's burst of results)
publish hundreds of messages and need to know that RabbitMQ has taken every one of them.
pika's ``BlockingChannel.confirm_delivery`` makes each ``basic_publish`` wait for its own
confirm -- one round trip and one broker fsync per message.  Confirms are pipelined instead: the
whole batch is published, then the caller waits until every message of it is acked or nacked.
pika's public API for that is the asynchronous channel, whose callbacks run only while its I/O
loop runs; so a :class:`ConfirmingConnection` drives a ``SelectConnection`` on a thread of its
own and every other thread hands it work through ``add_callback_threadsafe``.  That also makes
it safe to share between threads and keeps the AMQP heartbeat answered while nobody publishes.
(``benchmarks/confirms_choice.py`` measures it against the earlier pipelining through the
blocking channel's private asynchronous side.)

A message counts as taken when RabbitMQ acked it and did not return it: a ``mandatory`` message
that no queue took is returned, then acked.  A nack, a return, a connection or channel lost
before the confirm, or no confirm within the timeout, is reported to the caller, who publishes
the message again (a duplicate at worst) or fails the batch.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import SelectConnection

from outpost.runtime.amqp_connection import AmqpTarget

#: Seconds to wait for the connection to open and confirms to be enabled.
OPEN_TIMEOUT = 30.0


class Message(NamedTuple):
    """One message to publish; its ``properties.message_id`` identifies it when returned.

    A named tuple: hundreds are built per batch, on the hot path."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    mandatory: bool = False


def persistent_json(kind: str, message_id: str | None) -> pika.BasicProperties:
    """The properties of every Outpost envelope: persistent JSON, typed by envelope type."""
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type="application/json",
        type=kind,
        message_id=message_id,
    )


@dataclass
class _Batch:
    """The confirms one caller waits for: ``taken[i]`` becomes True when message i is taken."""

    messages: Sequence[Message]
    taken: list[bool]
    left: int
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.done.set()


class ConfirmingConnection:
    """A connection and a channel in confirm mode, run by an I/O thread; see the module
    docstring.  Open with :meth:`open`; once it fails (connection lost, timeout) it stays
    failed: close it and open a new one."""

    def __init__(self, target: AmqpTarget, params: pika.URLParameters) -> None:
        """Use :meth:`open`."""
        self.target = target
        self._connection: SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._error: BaseException | None = None
        # Owned by the I/O thread: delivery tag -> (batch, index), or None when not awaited.
        self._awaiting: collections.OrderedDict[int, tuple[_Batch, int] | None] = (
            collections.OrderedDict()
        )
        self._next_tag = 1
        self._returned: set[str] = set()
        self._thread = threading.Thread(
            target=self._run, args=(params,), name="outpost-amqp-io", daemon=True
        )

    # ------------------------------------------------------------------ any thread
    @classmethod
    def open(cls, target: AmqpTarget, timeout: float = OPEN_TIMEOUT) -> ConfirmingConnection:
        """Connect to the first of the target's nodes that answers and enable confirms; raise
        what pika raised for the last node (see ``amqp_connection``)."""
        # Bad TLS files raise here, in the caller's thread.
        nodes = target.all_parameters()
        deadline = time.monotonic() + timeout
        for index, params in enumerate(nodes):
            try:
                return cls._open_one(target, params, max(1.0, deadline - time.monotonic()))
            except Exception as exc:
                if index == len(nodes) - 1 or target.untrusted(exc) is not None:
                    raise
        raise AssertionError("unreachable: a target has at least one node")

    @classmethod
    def _open_one(
        cls, target: AmqpTarget, params: pika.URLParameters, timeout: float
    ) -> ConfirmingConnection:
        connection = cls(target, params)
        connection._thread.start()
        if not connection._ready.wait(timeout):
            connection.close()
            raise pika.exceptions.AMQPConnectionError(
                f"RabbitMQ did not open a channel with confirms within {timeout:.0f}s"
            )
        if connection._error is not None:
            connection.close()
            error = connection._error
            final = target.untrusted(error)
            if final is not None:
                raise final from error
            raise error
        return connection

    @property
    def is_open(self) -> bool:
        return self._error is None and self._thread.is_alive()

    def publish(
        self, messages: Sequence[Message], timeout: float, taken: list[bool] | None = None
    ) -> list[bool]:
        """Publish ``messages`` in order and wait for all their confirms: for each, whether
        RabbitMQ took it.  Raises a pika error if the link failed before every confirm came.

        ``taken``, one False per message, is filled in as the confirms arrive (and returned):
        pass it to know, after an error, which messages RabbitMQ took all the same."""
        if taken is None:
            taken = [False] * len(messages)
        if not messages:
            return taken
        batch = _Batch(messages, taken, len(messages))
        self._call(lambda: self._publish(messages, batch))
        self._wait(batch, time.monotonic() + timeout)
        if batch.error is not None:
            raise batch.error
        return batch.taken

    def send(self, message: Message) -> None:
        """Publish ``message`` without waiting for its confirm (one that may be lost)."""
        self._call(lambda: self._publish([message], None))

    def close(self) -> None:
        """Close the connection (messages handed over before are written first) and wait for
        the I/O thread to end."""
        self._closing.set()  # one still opening closes itself once open
        connection = self._connection
        if connection is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):  # the loop ended meanwhile: nothing to close
                connection.ioloop.add_callback_threadsafe(self._close)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.target.socket_timeout + 5)

    def _wait(self, batch: _Batch, deadline: float) -> None:
        """Wait for ``batch`` until ``deadline``, failing it if the I/O thread ended first
        (a batch handed over as the loop stopped would never be published)."""
        while not batch.done.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            if not self._thread.is_alive():
                batch.fail(self._error or pika.exceptions.ConnectionWrongStateError("closed"))
            elif time.monotonic() >= deadline:
                error = pika.exceptions.AMQPConnectionError(
                    f"no publisher confirm within {deadline - batch.started:.0f}s"
                )
                if self._error is None:
                    self._error = error  # not open from now on: its owner closes it
                batch.fail(error)

    def _call(self, callback: Callable[[], None]) -> None:
        connection = self._connection
        if self._error is not None:
            raise self._error
        if connection is None or not self._thread.is_alive():
            raise pika.exceptions.ConnectionWrongStateError("the AMQP connection is closed")
        connection.ioloop.add_callback_threadsafe(callback)

    # ------------------------------------------------------------------ I/O thread
    def _run(self, params: pika.URLParameters) -> None:
        try:
            self._connection = SelectConnection(
                params,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            self._connection.ioloop.start()
        except Exception as exc:  # the loop must never end without telling the waiters
            self._fail(exc)
        finally:
            if self._connection is not None:
                self._connection.ioloop.close()
            self._ready.set()

    def _on_open(self, connection: pika.connection.Connection) -> None:
        if self._closing.is_set():  # given up on (open timed out) while it connected
            self._close()
            return
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: pika.channel.Channel) -> None:
        if self._closing.is_set():
            self._close()
            return
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._ready.set())

    def _on_open_error(self, connection: pika.connection.Connection, error: BaseException) -> None:
        self._fail(error)
        connection.ioloop.stop()

    def _on_closed(self, connection: pika.connection.Connection, reason: BaseException) -> None:
        self._fail(reason)
        connection.ioloop.stop()

    def _on_channel_closed(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        self._fail(reason)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _close(self) -> None:
        self._fail(pika.exceptions.ConnectionWrongStateError("the AMQP connection was closed"))
        if self._connection is not None and not (
            self._connection.is_closing or self._connection.is_closed
        ):
            self._connection.close()

    def _fail(self, error: BaseException) -> None:
        """Fail every batch still waiting, and every later call."""
        if self._error is None:
            self._error = error
        waiting, self._awaiting = self._awaiting, collections.OrderedDict()
        for entry in waiting.values():
            if entry is not None:
                entry[0].fail(error)
        self._ready.set()

    def _publish(self, messages: Sequence[Message], batch: _Batch | None) -> None:
        channel = self._channel
        if self._error is not None or channel is None:
            if batch is not None:
                batch.fail(self._error or pika.exceptions.ChannelWrongStateError("no channel"))
            return
        awaiting, publish = self._awaiting, channel.basic_publish
        try:
            for index, message in enumerate(messages):
                awaiting[self._next_tag] = None if batch is None else (batch, index)
                self._next_tag += 1
                publish(*message)  # exchange, routing_key, body, properties, mandatory
        except Exception as exc:  # the channel closed under us: the batch fails as a whole
            self._fail(exc)

    def _on_return(
        self,
        _channel: pika.channel.Channel,
        _method: pika.spec.Basic.Return,
        properties: pika.spec.BasicProperties,
        _body: bytes,
    ) -> None:
        # RabbitMQ sends a mandatory message's Basic.Return before its Basic.Ack.
        if properties.message_id is not None:
            self._returned.add(properties.message_id)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        awaiting = self._awaiting
        tag: int = method.delivery_tag
        if method.multiple:
            entries = []
            while awaiting:
                first = next(iter(awaiting))
                if first > tag:
                    break
                entries.append(awaiting.popitem(last=False)[1])
        else:
            entries = [awaiting.pop(tag, None)]
        for entry in entries:
            if entry is None:
                continue
            batch, index = entry
            returned = False
            if self._returned:
                message_id = batch.messages[index].properties.message_id
                returned = message_id in self._returned
                self._returned.discard(message_id)
            batch.taken[index] = acked and not returned
            batch.left -= 1
            if not batch.left:
                batch.done.set()
