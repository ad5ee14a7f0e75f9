"""``listener.counts``: the session limits of workers sharing the ports are counted across all of them."""
import os

import pytest

from smtpservice.listener.counts import SLOTS, SessionCounts, clear_column, create_table


@pytest.fixture
def table():
    descriptor = create_table(3)
    yield descriptor
    os.close(descriptor)


def test_each_worker_sees_the_sessions_of_all(table):
    first, second = SessionCounts(table, 3, 0), SessionCounts(table, 3, 1)
    for client in ("192.0.2.1", "192.0.2.1", "198.51.100.7"):
        first.opened(client)
    second.opened("192.0.2.1")

    assert [counts.from_client("192.0.2.1") for counts in (first, second)] == [3, 3]
    assert second.from_client("198.51.100.7") == 1
    assert second.from_client("203.0.113.9") == 0
    assert first.in_all() == second.in_all() == 4

    first.closed("192.0.2.1")
    assert second.from_client("192.0.2.1") == 2 and second.in_all() == 3


def test_a_worker_that_died_is_forgotten_and_a_new_worker_starts_from_zero(table):
    dead, alive = SessionCounts(table, 3, 0), SessionCounts(table, 3, 1)
    dead.opened("192.0.2.1")
    dead.opened("192.0.2.1")
    clear_column(table, 0)
    assert alive.from_client("192.0.2.1") == 0 and alive.in_all() == 0

    alive.opened("192.0.2.1")
    restarted = SessionCounts(table, 3, 1)  # the same column again: a fresh worker counts only its own
    assert restarted.from_client("192.0.2.1") == 0


def test_two_addresses_in_one_slot_share_a_count_which_only_refuses_early(table):
    counts = SessionCounts(table, 3, 0)
    first = "192.0.2.1"
    other = next(f"10.0.{n // 256}.{n % 256}" for n in range(1, 1 << 16)
                 if SessionCounts.slot(f"10.0.{n // 256}.{n % 256}") == SessionCounts.slot(first))
    counts.opened(first)
    assert counts.from_client(other) == 1  # never fewer than the address's own sessions
    assert SessionCounts.slot(first) < SLOTS


def test_alone_a_listener_counts_exactly_without_a_table():
    counts = SessionCounts()
    counts.opened("192.0.2.1")
    counts.opened("192.0.2.2")
    counts.closed("192.0.2.1")
    assert (counts.from_client("192.0.2.1"), counts.from_client("192.0.2.2"), counts.in_all()) == (0, 1, 1)
