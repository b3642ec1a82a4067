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


def test_a_waiter_is_woken_only_by_its_own_tasks_or_an_unspecified_notify() -> None:
    notifier = ResultNotifier()
    notifier.shared_source = True  # no per-waiter polling: only notifications end a wait
    with notifier.awaiting(frozenset({"a"})) as mine, notifier.awaiting(frozenset({"b"})) as other:
        assert notifier.waiters == 2 and sorted(notifier.waiting_ids()) == ["a", "b"]
        since = notifier.generation
        notifier.notify(["a", "c"])
        assert mine.wait(since, 0.0) == since + 1  # already set: returns at once
        assert other.wait(since + 1, 0.0) == since + 1  # not woken (and not waited for)
        notifier.notify()  # no ids said: everyone looks
        assert other.wait(since + 1, 60) == since + 2
    assert notifier.waiters == 0 and notifier.waiting_ids() == []


def test_closing_releases_every_waiter() -> None:
    notifier = ResultNotifier()
    notifier.shared_source = True
    woke: list[int] = []
    with notifier.awaiting(frozenset({"x"})) as waiter:
        thread = threading.Thread(target=lambda: woke.append(waiter.wait(notifier.generation, 60)))
        thread.start()
        notifier.close()
        thread.join(10)
    assert woke and notifier.closed


def test_local_notifications_are_relayed_and_received_ones_are_not() -> None:
    notifier = ResultNotifier()
    relayed: list[frozenset[str]] = []
    notifier.relay = relayed.append
    notifier.notify(["a"])
    notifier.notify(["b"], local=False)
    notifier.notify()  # nothing said: nothing to tell the others
    assert relayed == [frozenset({"a"})]
