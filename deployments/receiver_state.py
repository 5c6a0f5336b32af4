"""What the alert receiver remembers between deliveries: which alerts started a run (dedupe) and which
events still wait for their run to appear (in flight), per object.

Two stores, one interface (`session(keys)` yields a view with `started_within`, `posted`, `record`):

- `MemoryState`: in the process, as `make run` has always had it. A restart forgets it, and a second
  replica does not see it.
- `PostgresState`: in PostgreSQL, so a restarted receiver and every replica behind one Service see the same
  state. A session is one transaction holding a transaction-level advisory lock per object key (taken in
  sorted order, so two replicas never deadlock): two replicas deciding about the same object take turns,
  and what one recorded is what the other reads next. A replica that dies mid-decision loses its
  connection, and PostgreSQL ends its transaction and frees its locks at once: nothing is left held.

Why PostgreSQL and not the Prefect server: Prefect's API has no transaction and no compare-and-set, so
sharing this state through it would take a lease-held mutex (two more writes per alert on the very server
whose write contention we are removing) plus records that pile up in its UI; PostgreSQL is already there
when you scale out (the Prefect server runs on it) and does this exactly. Its tables live in their own
schema, `runbooks_receiver`, which Prefect's migrations never touch.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from .prefect_api import PrefectUnavailable

SCHEMA = "runbooks_receiver"
LOCK_TIMEOUT = "15s"            # a replica stuck inside a session cannot hold the others for longer
CALL_TIMEOUT = 30.0
_SCHEMA_LOCK = 0x72756E626F6F6B   # one advisory lock around CREATE ... IF NOT EXISTS (it races otherwise)
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.started (
    source text NOT NULL, fingerprint text NOT NULL, object_key text NOT NULL, at timestamptz NOT NULL,
    PRIMARY KEY (source, fingerprint));
CREATE TABLE IF NOT EXISTS {SCHEMA}.posted (
    id bigserial PRIMARY KEY, object_key text NOT NULL, fingerprint text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS posted_by_key ON {SCHEMA}.posted (object_key, at);
"""


class StateUnavailable(PrefectUnavailable):
    """The shared state store cannot be reached: answered 503 like an unreachable Prefect (nothing recorded)."""


@dataclass(frozen=True)
class Posted:
    """An event posted for an object whose run may not have appeared yet."""
    fingerprint: str
    age: float                  # seconds since it was posted
    wall: dt.datetime           # when, for matching the run's expected start time


@dataclass(frozen=True)
class Accepted:
    source: str
    fingerprint: str
    key: str


class StateView(Protocol):
    def started_within(self, source: str, fingerprint: str, seconds: float) -> bool: ...
    def posted(self, key: str) -> list[Posted]: ...
    def record(self, accepted: list[Accepted]) -> None: ...


class MemoryState:
    """The process's own memory (the default). Windows use a monotonic clock."""

    def __init__(self, *, pending_seconds: float, horizon: float, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.pending_seconds, self.horizon, self.clock, self.wall_clock = pending_seconds, horizon, clock, wall_clock
        self._started: dict[tuple[str, str], float] = {}
        self._posted: dict[str, list[tuple[str, float, dt.datetime]]] = {}

    @contextmanager
    def session(self, keys: list[str]) -> Iterator["MemoryState"]:
        yield self               # the dispatcher's own lock already serialises sessions in one process

    def started_within(self, source: str, fingerprint: str, seconds: float) -> bool:
        return self.clock() - self._started.get((source, fingerprint), -1e18) < seconds

    def posted(self, key: str) -> list[Posted]:
        now = self.clock()
        return [Posted(f, now - at, wall) for f, at, wall in self._posted.get(key, ()) if now - at < self.pending_seconds]

    def record(self, accepted: list[Accepted]) -> None:
        now, wall = self.clock(), self.wall_clock()
        for a in accepted:
            self._started[(a.source, a.fingerprint)] = now
            self._posted.setdefault(a.key, []).append((a.fingerprint, now, wall))
        for key in [k for k, at in self._started.items() if now - at > self.horizon]:
            del self._started[key]
        for key in list(self._posted):
            self._posted[key] = [p for p in self._posted[key] if now - p[1] < self.pending_seconds]
            if not self._posted[key]:
                del self._posted[key]

    def close(self) -> None:
        pass


class PostgresState:
    """The state in PostgreSQL (see the module's docstring). One connection, used by one session at a time
    (the dispatcher serialises its own sessions), driven by asyncpg on a private event loop."""

    def __init__(self, url: str, *, pending_seconds: float, horizon: float,
                 wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.url, self.pending_seconds, self.horizon, self.wall_clock = url, pending_seconds, horizon, wall_clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver-state", daemon=True)
        self._thread.start()
        self._connection = None
        self._call(self._create_schema())

    # -- plumbing ----------------------------------------------------------------------------------

    def _call(self, coroutine):
        """Run a coroutine on the state's loop; any failure to reach PostgreSQL is StateUnavailable."""
        import asyncpg
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)
        except (OSError, asyncio.TimeoutError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._call_quietly(self._drop_connection())
            raise StateUnavailable(f"the receiver's shared state (PostgreSQL) is unavailable: "
                                   f"{type(exc).__name__}: {_without_password(str(exc), self.url)}") from exc

    def _call_quietly(self, coroutine) -> None:
        try:
            asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(5)
        except Exception:                               # noqa: BLE001 - best effort on a broken connection
            pass

    async def _connect(self):
        import asyncpg
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self.url, timeout=10)
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()

    async def _create_schema(self) -> None:
        connection = await self._connect()
        await connection.execute("SELECT pg_advisory_lock($1)", _SCHEMA_LOCK)
        try:
            await connection.execute(_DDL)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _SCHEMA_LOCK)

    # -- sessions ----------------------------------------------------------------------------------

    @contextmanager
    def session(self, keys: list[str]) -> Iterator["_PostgresView"]:
        """One transaction holding the advisory lock of every key (sorted); committed when the body returns,
        rolled back when it raises (a failed post records nothing)."""
        transaction = self._call(self._begin(sorted(set(keys))))
        try:
            yield _PostgresView(self)
        except BaseException:
            self._call_quietly(transaction.rollback())
            raise
        self._call(transaction.commit())

    async def _begin(self, keys: list[str]):
        connection = await self._connect()
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            for key in keys:
                await connection.execute("SELECT pg_advisory_xact_lock($1)", lock_id(key))
        except BaseException:
            await transaction.rollback()
            raise
        return transaction

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call_quietly(self._drop_connection())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class _PostgresView:
    def __init__(self, state: PostgresState) -> None:
        self.state = state

    def _fetch(self, query: str, *args):
        async def fetch():
            return await (await self.state._connect()).fetch(query, *args)
        return self.state._call(fetch())

    def started_within(self, source: str, fingerprint: str, seconds: float) -> bool:
        since = self.state.wall_clock() - dt.timedelta(seconds=seconds)
        return bool(self._fetch(f"SELECT 1 FROM {SCHEMA}.started WHERE source = $1 AND fingerprint = $2 AND at > $3",
                                source, fingerprint, since))

    def posted(self, key: str) -> list[Posted]:
        wall = self.state.wall_clock()
        rows = self._fetch(f"SELECT fingerprint, at FROM {SCHEMA}.posted WHERE object_key = $1 AND at > $2 "
                           "ORDER BY at", key, wall - dt.timedelta(seconds=self.state.pending_seconds))
        return [Posted(row["fingerprint"], (wall - row["at"]).total_seconds(), row["at"]) for row in rows]

    def record(self, accepted: list[Accepted]) -> None:
        wall, state = self.state.wall_clock(), self.state

        async def write() -> None:
            connection = await state._connect()
            await connection.executemany(
                f"INSERT INTO {SCHEMA}.started (source, fingerprint, object_key, at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (source, fingerprint) DO UPDATE SET object_key = EXCLUDED.object_key, at = EXCLUDED.at",
                [(a.source, a.fingerprint, a.key, wall) for a in accepted])
            await connection.executemany(f"INSERT INTO {SCHEMA}.posted (object_key, fingerprint, at) "
                                         "VALUES ($1, $2, $3)", [(a.key, a.fingerprint, wall) for a in accepted])
            await connection.execute(f"DELETE FROM {SCHEMA}.started WHERE at < $1",
                                     wall - dt.timedelta(seconds=state.horizon))
            await connection.execute(f"DELETE FROM {SCHEMA}.posted WHERE at < $1",
                                     wall - dt.timedelta(seconds=state.pending_seconds))
        state._call(write())


def lock_id(key: str) -> int:
    """A signed 64-bit advisory lock id for an object key (a collision only makes two objects take turns)."""
    return int.from_bytes(hashlib.sha256(f"runbooks-receiver:{key}".encode()).digest()[:8], "big", signed=True)


def _without_password(text: str, url: str) -> str:
    from urllib.parse import urlsplit
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


__all__ = ["Accepted", "MemoryState", "Posted", "PostgresState", "StateUnavailable", "StateView", "lock_id"]
