"""Open sessions per client address and in all, counted across the workers that share the ports.

The session limits (``--max-sessions``, ``--max-sessions-per-client``) are the listener's, not each
worker's: the kernel spreads connections over the workers by a hash, unevenly, so a worker that
enforced its share alone refused a client with 20 connections under a limit of 50 (four workers, 13
each). The supervisor makes one small table in shared memory, a column per worker; a worker writes only
its own column and reads all of them, so no lock is needed. An address is counted in one of
``SLOTS`` slots (by CRC-32, the same in every process): two addresses that share a slot share a
count, which can only refuse early, never let a client past its limit. A worker clears its column
when it starts, and the supervisor clears the column of a worker that died. The table is an anonymous
memory file (``memfd_create``) the workers inherit: it has no name, so it cannot be left behind.
"""
from __future__ import annotations

import collections
import mmap
import os
import zlib

SLOTS = 65_536
CELL = "I"
CELL_BYTES = 4


def table_size(workers: int) -> int:
    """Bytes of the shared table for ``workers`` workers: per worker, SLOTS address counts and the total."""
    return workers * (SLOTS + 1) * CELL_BYTES


def create_table(workers: int) -> int:
    """A zeroed table for the supervisor to hand to its workers: an anonymous memory file (no path, so nothing is
    left behind however the listener ends); its descriptor, which the workers inherit."""
    descriptor = os.memfd_create("smtp-sessions", 0)
    os.ftruncate(descriptor, table_size(workers))
    return descriptor


def clear_column(table: int, worker: int) -> None:
    """Forget the sessions of ``worker`` (it died: its sessions died with it)."""
    os.pwrite(table, bytes((SLOTS + 1) * CELL_BYTES), worker * (SLOTS + 1) * CELL_BYTES)


class SessionCounts:
    """Sessions open, by client address and in all; across workers when given the supervisor's table."""

    def __init__(self, table: int | None = None, workers: int = 1, worker: int = 0) -> None:
        self.local: collections.Counter[str] = collections.Counter()
        """Alone (no table): the exact counts; with a table, the table holds them and these stay empty."""
        self.open = 0
        self.cells = None
        if table is not None:
            self.map = mmap.mmap(table, table_size(workers))
            self.cells = memoryview(self.map).cast(CELL)
            self.workers, self.base = workers, worker * (SLOTS + 1)
            self.cells[self.base:self.base + SLOTS + 1] = memoryview(bytes((SLOTS + 1) * CELL_BYTES)).cast(CELL)

    @staticmethod
    def slot(client: str) -> int:
        return zlib.crc32(client.encode("utf-8", "replace")) % SLOTS

    def opened(self, client: str) -> None:
        if self.cells is None:
            self.local[client] += 1
            self.open += 1
        else:
            self.cells[self.base + self.slot(client)] += 1
            self.cells[self.base + SLOTS] += 1

    def closed(self, client: str) -> None:
        if self.cells is None:
            self.local[client] -= 1
            if self.local[client] <= 0:
                del self.local[client]
            self.open -= 1
        else:
            slot = self.base + self.slot(client)
            self.cells[slot] = max(0, self.cells[slot] - 1)
            self.cells[self.base + SLOTS] = max(0, self.cells[self.base + SLOTS] - 1)

    def from_client(self, client: str) -> int:
        """Sessions open from ``client`` in the whole listener."""
        if self.cells is None:
            return self.local[client]
        slot = self.slot(client)
        return sum(self.cells[worker * (SLOTS + 1) + slot] for worker in range(self.workers))

    def in_all(self) -> int:
        """Sessions open in the whole listener."""
        if self.cells is None:
            return self.open
        return sum(self.cells[worker * (SLOTS + 1) + SLOTS] for worker in range(self.workers))

    def close(self) -> None:
        if self.cells is not None:
            self.cells[self.base:self.base + SLOTS + 1] = memoryview(bytes((SLOTS + 1) * CELL_BYTES)).cast(CELL)
            self.cells.release()
            self.map.close()
            self.cells = None
