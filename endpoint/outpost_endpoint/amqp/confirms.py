"""``Confirms``: publisher-confirm bookkeeping for one channel, so confirms can be pipelined.

Why: pika's ``BlockingChannel.confirm_delivery`` makes every ``basic_publish`` wait for its own
confirm -- one broker round trip and one broker fsync per message.  Enabling confirms on the
channel's asynchronous side instead (``channel._impl``, as the service's publisher does) lets
the publisher send a whole batch and then wait until every message of it is acked or nacked.

Delivery tags count every publish on the channel from 1 (RabbitMQ numbers them the same way),
so each publish on a channel in this mode must go through :meth:`Confirms.expect`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import pika
import pika.spec


class Confirms:
    """Tag → whether RabbitMQ took the message; see the module docstring."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self.selected = False
        self.next_tag = 1
        #: Called when nothing is left waiting, to end the current ``process_data_events`` wait.
        self.wake = wake
        self.waiting: collections.OrderedDict[int, str | None] = collections.OrderedDict()
        #: Outcome per message id: True when acked and not returned.
        self.outcome: dict[str, bool] = {}
        self.returned: set[str] = set()
        self._awaited = 0  # entries of ``waiting`` with a message id

    def attach(self, channel: Any) -> None:
        """Enable confirms on ``channel`` (a BlockingChannel) without its blocking wrapper."""
        impl = channel._impl
        impl.add_on_return_callback(self.on_return)
        impl.confirm_delivery(self.on_confirm, callback=self.on_select_ok)

    def expect(self, message_id: str | None) -> None:
        """Count the publish about to happen; ``message_id`` None for one not waited on."""
        self.waiting[self.next_tag] = message_id
        self.next_tag += 1
        if message_id is not None:
            self._awaited += 1

    def on_select_ok(self, _frame: Any) -> None:
        self.selected = True
        self.wake()

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            tags = []
            for tag in self.waiting:  # ascending: stop at the first one past the ack
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        acked = isinstance(method, pika.spec.Basic.Ack)
        for tag in tags:
            message_id = self.waiting.pop(tag, None)
            if message_id is not None:
                self._awaited -= 1
                # A returned message is acked too (after its Basic.Return): it still needs a
                # queue, so it counts as not taken.
                self.outcome[message_id] = acked and message_id not in self.returned
        if not self._awaited:
            self.wake()

    def on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        if properties.message_id is not None:
            self.returned.add(properties.message_id)

    def pending(self) -> bool:
        """Whether a message that is waited on has no confirm yet."""
        return self._awaited > 0
