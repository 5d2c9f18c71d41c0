"""Peers and raw limits the suite measures beside tractor_reg, all blocking clients.

* Pyro5's name server (``bench._roles pyro-ns``, in memory or with ``sql:`` storage):
  ``lookup`` and ``register`` through ``Pyro5.api.locate_ns(...)`` proxies, one client
  thread or 16 client threads (each with its own proxy: a Pyro5 proxy serves one thread).
* ``sqlite3``: one upsert committed per operation, in WAL mode, at the sync level the
  ``sqlite://`` backend uses by default (``synchronous=FULL``), one connection.
* redis-py: ``GET`` of one key on one connection.

Every function here blocks; the suite runs each in a worker thread
(``trio.to_thread.run_sync``) so the trio loop measures nothing of its own meanwhile.
Each returns ``(ops/s, latencies in seconds)`` over its timed operations only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import sqlite3
import threading
import time
from typing import Any

THREADS = 16
PYRO_URI = "PYRO:bench.object@127.0.0.1:9"
#: Makes every registering call's names new (``<tag>.<call>.<i>``), never re-registrations.
_CALLS = itertools.count()


def version_of(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _pyro_api() -> Any:
    return importlib.import_module("Pyro5.api")


def pyro_proxy(port: int) -> Any:
    """A name server proxy, connected (one ``ping``)."""
    ns = _pyro_api().locate_ns("127.0.0.1", port)
    ns.ping()
    return ns


def _timed(op: Any, n: int, warmup: int) -> tuple[float, list[float]]:
    for i in range(warmup):
        op(-1 - i)
    pc = time.perf_counter
    lat = [0.0] * n
    t0 = pc()
    for i in range(n):
        s = pc()
        op(i)
        lat[i] = pc() - s
    return n / (pc() - t0), lat


def _threaded(make_client: Any, per_thread: int, warmup: int) -> tuple[float, list[float]]:
    """``THREADS`` threads, each with its own client ``make_client(k) -> (op, close)``
    doing ``per_thread`` calls after a warm-up, all released together: (aggregate ops/s,
    latencies)."""
    warm = threading.Barrier(THREADS + 1)
    lats: list[list[float]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    pc = time.perf_counter

    def worker(k: int) -> None:
        try:
            # In this thread: a Pyro5 proxy belongs to the thread that made it.
            op, close = make_client(k)
            try:
                for i in range(warmup):
                    op(-1 - i)
                warm.wait()
                mine = lats[k]
                for i in range(per_thread):
                    s = pc()
                    op(i)
                    mine.append(pc() - s)
            finally:
                close()
        except Exception as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)
            warm.abort()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        warm.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = pc()
    for thread in threads:
        thread.join()
    t1 = pc()
    if errors:
        raise errors[0]
    return THREADS * per_thread / (t1 - t0), [x for lat in lats for x in lat]


def pyro_prepare(port: int, name: str) -> None:
    """Register ``name`` (the entry lookups ask for) at the name server."""
    ns = pyro_proxy(port)
    try:
        ns.register(name, PYRO_URI)
    finally:
        ns._pyroRelease()


def _pyro_lookup(port: int, name: str) -> tuple[Any, Any]:
    ns = pyro_proxy(port)

    def op(_i: int) -> None:
        if not ns.lookup(name):
            raise RuntimeError(f"Pyro5 lookup of {name!r} found nothing")

    return op, ns._pyroRelease


def _pyro_register(port: int, tag: str) -> tuple[Any, Any]:
    ns = pyro_proxy(port)

    def op(i: int) -> None:
        ns.register(f"{tag}.{i}", PYRO_URI)

    return op, ns._pyroRelease


def _one_client(client: tuple[Any, Any], n: int, warmup: int) -> tuple[float, list[float]]:
    op, close = client
    try:
        return _timed(op, n, warmup)
    finally:
        close()


def pyro_lookups(port: int, name: str, n: int, warmup: int) -> tuple[float, list[float]]:
    """One client, one proxy: ``n`` sequential ``ns.lookup(name)``."""
    return _one_client(_pyro_lookup(port, name), n, warmup)


def pyro_lookups16(port: int, name: str, per: int, warmup: int) -> tuple[float, list[float]]:
    """16 client threads, each with its own proxy, ``per`` lookups each."""
    return _threaded(lambda _k: _pyro_lookup(port, name), per, warmup)


def pyro_registers(port: int, tag: str, n: int, warmup: int) -> tuple[float, list[float]]:
    """One client: ``n`` sequential ``ns.register(<tag>.<call>.<i>, uri)`` of new names."""
    return _one_client(_pyro_register(port, f"{tag}.{next(_CALLS)}"), n, warmup)


def pyro_registers16(port: int, tag: str, per: int, warmup: int) -> tuple[float, list[float]]:
    """16 client threads, each registering ``per`` new names through its own proxy."""
    call = next(_CALLS)
    return _threaded(lambda k: _pyro_register(port, f"{tag}.{call}.t{k}"), per, warmup)


# -- raw limits ---------------------------------------------------------------------------


class SqliteUpserts:
    """One sqlite3 connection in WAL mode at ``synchronous``; one committed upsert per op,
    of a row shaped like a registry entry."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (name TEXT NOT NULL, uuid TEXT NOT NULL, "
            "addrs TEXT NOT NULL, revision INTEGER NOT NULL, registered_at REAL NOT NULL, "
            "expires_at REAL NOT NULL, registrar TEXT NOT NULL DEFAULT '', "
            "PRIMARY KEY (name, uuid))"
        )
        self.revision = 0

    def op(self, i: int) -> None:
        self.revision += 1
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, uuid) DO "
            "UPDATE SET addrs = excluded.addrs, revision = excluded.revision, "
            "expires_at = excluded.expires_at",
            ("lat", "raw", '[["127.0.0.1",19950]]', self.revision, now, now + 3600, "raw"),
        )
        self.conn.execute("COMMIT")

    def run(self, n: int, warmup: int) -> tuple[float, list[float]]:
        return _timed(self.op, n, warmup)

    def close(self) -> None:
        self.conn.close()


class RedisGets:
    """redis-py (blocking client), one connection: ``GET`` of one existing key per op."""

    def __init__(self, port: int) -> None:
        redis: Any = importlib.import_module("redis")
        self.client = redis.Redis(host="127.0.0.1", port=port, db=0)
        self.client.set("bench:raw:key", b"x" * 64)

    def op(self, _i: int) -> None:
        if self.client.get("bench:raw:key") is None:
            raise RuntimeError("redis GET found nothing")

    def run(self, n: int, warmup: int) -> tuple[float, list[float]]:
        return _timed(self.op, n, warmup)

    def close(self) -> None:
        self.client.close()
