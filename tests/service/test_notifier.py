"""The result notifier's record of which tasks finished, which lets long-polls skip queries."""

from __future__ import annotations

import threading

from outpost_service.notifier import ResultNotifier


def test_a_wake_up_for_other_tasks_does_not_concern_a_waiter() -> None:
    notifier = ResultNotifier()
    since = notifier.generation
    notifier.notify(["a", "b"])
    notifier.notify(["c"])
    assert not notifier.concerns(since, frozenset({"x", "y"}))
    assert notifier.concerns(since, frozenset({"x", "c"}))
    assert notifier.concerns(since, frozenset({"a"}))
    # Only generations after ``since`` count.
    assert not notifier.concerns(since + 1, frozenset({"a"}))
    assert not notifier.concerns(notifier.generation, frozenset({"c"}))


def test_when_in_doubt_a_waiter_is_concerned() -> None:
    notifier = ResultNotifier(history=2)
    since = notifier.generation
    notifier.notify()  # no ids said: anything may have finished
    assert notifier.concerns(since, frozenset({"x"}))
    since = notifier.generation
    for task_id in ("a", "b", "c"):  # three generations, only two remembered
        notifier.notify([task_id])
    assert notifier.concerns(since, frozenset({"x"}))
    assert not notifier.concerns(since + 1, frozenset({"x"}))


def test_wait_returns_when_the_generation_moves() -> None:
    notifier = ResultNotifier()
    notifier.local_source = True
    since = notifier.generation
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(notifier.wait(since, 60)))
    waiter.start()
    notifier.notify(["a"])
    waiter.join(30)
    assert not waiter.is_alive() and woke == [since + 1]


def test_finished_among_names_exactly_the_waiters_finished_tasks() -> None:
    notifier = ResultNotifier()
    since = notifier.generation
    assert notifier.finished_among(since, frozenset({"a"})) == set()
    notifier.notify(["a", "b"])
    notifier.notify(["c", "d"])
    assert notifier.finished_among(since, frozenset({"a", "d", "x"})) == {"a", "d"}
    assert notifier.finished_among(since + 1, frozenset({"a", "d", "x"})) == {"d"}
    notifier.notify()
    assert notifier.finished_among(since, frozenset({"a"})) is None
