"""``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` — a registry shared
by several registrars through one Redis (or Redis Cluster).

Design (same shape as the SQLite backend):

* **Reads never touch Redis.** Lookups are answered from an in-memory view (a
  :class:`MemoryBackend` replica) that only holds rows Redis stored.
* **Writes are one atomic script per batch.** Concurrent writes queue up; the leader
  plans the batch on scratch rows with the memory backend's rules, then one ``EVALSHA``
  checks that nobody wrote since the view's last change (the change sequence number)
  and applies every row, appends to the change stream, sets the store revision and
  publishes a notification — all or nothing. If someone else wrote first, the leader
  replays their changes and plans again. Scripts are loaded once, called by SHA, and
  reloaded on ``NOSCRIPT``.
* **Every key of a namespace shares one hash tag** (``tractor_reg:{NAMESPACE}:v1:...``),
  so the scripts work on Redis Cluster, and several deployments can share one Redis.
* **Loading.** A small store is read in one atomic script reply. A large one (thousands
  of entries) is read page by page with ``HSCAN``, then the changes committed during the
  scan are replayed from the change stream, so the raw reply never has to fit in memory
  beside the view; if the stream was trimmed meanwhile, the one-reply load is used.
* **Change notifications.** Each registrar subscribes to the namespace's channel and
  replays the change stream when told (and every ``poll_interval`` as a safety net).
  After a lost subscription it replays everything it may have missed before trusting
  its view; if Redis lost its data (restart without persistence) it reloads, and the
  live actors re-register on their next renewal.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import trio

from .._aio import AsyncioThread
from .._exceptions import (
    BackendClosed,
    BackendError,
    BackendURLError,
    PermissionDenied,
    SchemaError,
    StoreBusy,
    StoreUnavailable,
    TractorRegError,
)
from ._base import DEFAULT_CLOCK, OWNER_DIGEST_SIZE, AddrTuple, Change, Clock, Entry, Uid
from ._open import positive_option, redact_url, retention_option
from ._replica import (
    BadRow,
    HistoryRow,
    Op,
    Plan,
    ReplicatedBackend,
    Unreadable,
    build_history,
    change_for,
    interned_addrs,
    one_holder_per_address,
    plan_batch,
    revision_of,
)

log = logging.getLogger("tractor_reg.backends.redis")

SCHEMA_VERSION = 1
MIN_REDIS_VERSION = (6, 2, 0)
DEFAULT_NAMESPACE = "tractor_reg"
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CHANGE_RETENTION = 100_000
_MAX_CONFLICT_RETRIES = 100
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
#: Stores of at least this many entries are loaded page by page: one HGETALL reply of
#: 100,000 entries (a bytes object per field and value, then copies) took more memory
#: than the view it fed. Below it the single atomic reply is cheaper.
_PAGED_LOAD_FROM = 5_000
#: Hash fields asked for per HSCAN call, and change rows per XRANGE call, of a paged load.
_LOAD_PAGE = 2_000
#: Change rows read back as the view's history when the namespace is (re)loaded.
_HISTORY_ROWS = 10_000

# KEYS: entries, rev, seq, changes
# ARGV: expected_seq, new_rev, maxlen, channel, n_upserts, [field, json]*, n_deletes,
#       [field]*, n_changes, [kind, field, json, reason]*
_APPLY = """
local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
if cur == nil then return redis.error_reply('tractor_reg: ' .. KEYS[3] .. ' is not a number') end
if cur ~= tonumber(ARGV[1]) then
  return {0, cur, ''}
end
local rev_now = tonumber(redis.call('GET', KEYS[2]) or '0')
if rev_now == nil then
  return redis.error_reply('tractor_reg: ' .. KEYS[2] .. ' is not a number')
end
if rev_now > tonumber(ARGV[2]) then
  -- revisions were used without change rows (writes that cancelled out): replan
  return {0, cur, ''}
end
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1
end
redis.call('SET', KEYS[2], ARGV[2])
n = tonumber(ARGV[i]); i = i + 1
local q = cur
local last = ''
for _ = 1, n do
  q = q + 1
  last = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
    'q', q, 'r', ARGV[2], 'k', ARGV[i], 'f', ARGV[i + 1], 'e', ARGV[i + 2], 'w', ARGV[i + 3])
  i = i + 4
end
redis.call('SET', KEYS[3], q)
redis.call('PUBLISH', ARGV[4], q)
return {1, q, last}
"""

# KEYS: seq, changes, rev ; ARGV: after_id, count
_SINCE = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq == nil then return redis.error_reply('tractor_reg: ' .. KEYS[1] .. ' is not a number') end
local rev = tonumber(redis.call('GET', KEYS[3]) or '0')
if rev == nil then return redis.error_reply('tractor_reg: ' .. KEYS[3] .. ' is not a number') end
local rows = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {seq, rows, rev}
"""

# KEYS: entries, rev, seq, changes ; ARGV: whole_below
# The head (rev, seq, last change id) and, unless the hash has whole_below entries or
# more (0: no limit), the whole hash; else its length, for a paged load.
_SNAPSHOT = """
local rev = tonumber(redis.call('GET', KEYS[2]) or '0')
if rev == nil then return redis.error_reply('tractor_reg: ' .. KEYS[2] .. ' is not a number') end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq == nil then return redis.error_reply('tractor_reg: ' .. KEYS[3] .. ' is not a number') end
local top = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
local last = '0-0'
if top[1] then last = top[1][1] end
local below = tonumber(ARGV[1]) or 0
if below > 0 then
  local n = redis.call('HLEN', KEYS[1])
  if n >= below then return {rev, seq, last, n} end
end
return {rev, seq, last, redis.call('HGETALL', KEYS[1])}
"""


# -- URL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisOptions:
    """Everything a ``redis*://`` URL says."""

    url: str
    cluster: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    namespace: str = DEFAULT_NAMESPACE
    poll_interval: float = DEFAULT_POLL_INTERVAL
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT
    change_retention: int = DEFAULT_CHANGE_RETENTION
    ssl: dict[str, str] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL without its password, for logs and errors."""
        return redact_url(self.url)


def parse_redis_url(url: str) -> RedisOptions:
    """Parse ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS),
    ``unix:///path/redis.sock?db=N`` and ``redis+cluster://host:port[,host:port...]``.

    Query options: ``namespace`` (default ``tractor_reg``), ``poll_interval``,
    ``connect_timeout``, ``socket_timeout`` (seconds), ``change_retention`` (rows),
    ``db`` (unix only), and for TLS ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_cert_reqs`` (``required``/``optional``/``none``).
    """
    if not isinstance(url, str):
        raise BackendURLError(f"backend URL must be a str, got {type(url).__name__}")
    shown = redact_url(url)  # error messages never carry the password
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _SCHEMES:
        raise BackendURLError(f"not a Redis URL: {shown!r}; expected one of {_SCHEMES}")
    cluster = scheme.endswith("+cluster")
    tls = scheme.startswith("rediss")
    opts: dict[str, Any] = {"url": url, "cluster": cluster, "tls": tls}

    if cluster:
        # urlsplit cannot parse a comma-separated host list: split it by hand.
        if "#" in rest:
            raise BackendURLError(f"Redis URL {shown!r} must not have a fragment")
        before_query, _, query = rest.partition("?")
        netloc, _, path = before_query.partition("/")
        if path:
            raise BackendURLError(f"redis+cluster URLs take no database path, got {path!r}")
        if "@" in netloc:
            creds, _, hosts = netloc.rpartition("@")
            user, _, password = creds.partition(":")
            opts["username"] = unquote(user) or None
            opts["password"] = unquote(password) if password else None
        else:
            hosts = netloc
        nodes: list[tuple[str, int]] = []
        for part in hosts.split(","):
            node_host, _, node_port = part.strip().rpartition(":")
            node_host = node_host.strip("[]")
            if not node_host or not node_port.isdigit() or not 0 < int(node_port) < 65536:
                raise BackendURLError(f"bad cluster node {part!r} in {shown!r}; expected host:port")
            nodes.append((node_host, int(node_port)))
        opts["nodes"] = tuple(nodes)
    else:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BackendURLError(f"malformed Redis URL {shown!r}: {exc}") from exc
        if parts.fragment:
            raise BackendURLError(f"Redis URL {shown!r} must not have a fragment")
        query = parts.query
        opts["username"] = unquote(parts.username) if parts.username else None
        opts["password"] = unquote(parts.password) if parts.password else None
        if scheme == "unix":
            # unix://[user:password@]/path/redis.sock: only credentials may precede the path
            if parts.hostname or parts.port or not parts.path.startswith("/"):
                raise BackendURLError(
                    f"unix URL must be unix:///abs/path/redis.sock, got {shown!r}"
                )
            opts["unix_path"] = unquote(parts.path)
        else:
            if not parts.hostname:
                raise BackendURLError(f"Redis URL {shown!r} names no host")
            opts["nodes"] = ((parts.hostname, port or 6379),)
            db_path = parts.path.strip("/")
            if db_path:
                if not db_path.isdigit():
                    raise BackendURLError(f"database {db_path!r} in {shown!r} is not a number")
                opts["db"] = int(db_path)

    ssl: dict[str, str] = {}
    seen: set[str] = set()
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise BackendURLError(f"malformed options in {shown!r}: {exc}") from exc
    for key, value in pairs:
        if key in seen:
            raise BackendURLError(f"option {key!r} given twice in {shown!r}")
        seen.add(key)
        if key == "namespace":
            if not _NAMESPACE_RE.match(value):
                raise BackendURLError(
                    f"namespace {value!r} must be 1-100 characters of letters, digits, _ . : -"
                )
            opts["namespace"] = value
        elif key in ("poll_interval", "connect_timeout", "socket_timeout"):
            opts[key] = positive_option(key, value)
        elif key == "change_retention":
            opts[key] = retention_option(key, value)
        elif key == "db" and scheme == "unix":
            if not value.isdigit():
                raise BackendURLError(f"db={value!r} is not a number")
            opts["db"] = int(value)
        elif key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") and tls:
            ssl[key] = value
        elif key == "ssl_cert_reqs" and tls:
            if value not in ("required", "optional", "none"):
                raise BackendURLError("ssl_cert_reqs must be required, optional or none")
            ssl[key] = value
        else:
            raise BackendURLError(
                f"unknown Redis option {key!r} in {shown!r}; known: namespace, poll_interval, "
                "connect_timeout, socket_timeout, change_retention"
                + (", db" if scheme == "unix" else "")
                + (", ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs" if tls else "")
            )
    opts["ssl"] = ssl
    return RedisOptions(**opts)


# -- encoding -----------------------------------------------------------------------------


class _StoredEntry(msgspec.Struct):
    """An entry as stored (msgspec cannot decode Entry's union of tuple types directly)."""

    name: str
    uuid: str
    addrs: list[tuple[str, int | str]]
    revision: int
    registered_at: float
    expires_at: float
    registrar: str = ""
    #: Base64 in the JSON (msgspec's encoding of bytes); absent in entries stored before
    #: registrations were owned, which the next registration of their uid adopts.
    owner: bytes = b""


_entry_encoder = msgspec.json.Encoder()
_entry_decoder = msgspec.json.Decoder(_StoredEntry)
_uid_decoder = msgspec.json.Decoder(tuple[str, str])


def _field(uid: Uid) -> bytes:
    return _entry_encoder.encode([uid[0], uid[1]])


def _decode_entry(raw: bytes) -> Entry:
    stored = _entry_decoder.decode(raw)
    if not stored.addrs or not stored.name or not stored.uuid:
        raise ValueError("entry without name, uuid or addresses")
    if not (math.isfinite(stored.registered_at) and math.isfinite(stored.expires_at)):
        raise ValueError("entry with a non-finite lease time")
    # Registrar names repeat across a whole store too: one string object each.
    return Entry(
        name=stored.name,
        uuid=stored.uuid,
        addrs=interned_addrs(stored.addrs),
        revision=stored.revision,
        registered_at=stored.registered_at,
        expires_at=stored.expires_at,
        registrar=sys.intern(stored.registrar),
        # A malformed digest (edited by hand) leaves the entry unowned, as in SQLite.
        owner=stored.owner if len(stored.owner) == OWNER_DIGEST_SIZE else b"",
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- asyncio side ---------------------------------------------------------------------------


class _Conn:
    """The redis.asyncio clients of one backend; lives on the bridge's asyncio loop."""

    def __init__(self, opts: RedisOptions) -> None:
        self.opts = opts
        self.client: Any = None
        self.pubsub_client: Any = None
        self.pubsub: Any = None
        self.shas: dict[str, str] = {}

    def _common(self) -> dict[str, Any]:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        opts = self.opts
        kwargs: dict[str, Any] = dict(
            username=opts.username,
            password=opts.password,
            socket_timeout=opts.socket_timeout,
            socket_connect_timeout=opts.connect_timeout,
            # Fail fast: the registrar reports outages and actors retry through leases.
            retry=Retry(NoBackoff(), 0),
            # RESP2: nothing here needs RESP3, a too-old server must reach our version
            # check instead of failing on HELLO, and redis-py's pool checks idle
            # connections for a server restart only under RESP2 (under RESP3 the first
            # command after a Redis restart failed on a dead pooled connection).
            protocol=2,
        )
        if opts.tls:
            kwargs["ssl"] = True
            kwargs.update(opts.ssl)
        return kwargs

    def _plain(self, host: str | None, port: int | None) -> Any:
        import redis.asyncio as aioredis

        kwargs = self._common()
        if self.opts.unix_path is not None:
            kwargs.pop("ssl", None)
            return aioredis.Redis(unix_socket_path=self.opts.unix_path, db=self.opts.db, **kwargs)
        return aioredis.Redis(
            host=host or "127.0.0.1", port=port or 6379, db=self.opts.db, **kwargs
        )

    async def connect(self) -> None:
        if self.opts.cluster:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            self.client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.opts.nodes],
                **self._common(),
            )
            await self.client.initialize()
        else:
            host, port = self.opts.nodes[0] if self.opts.nodes else (None, None)
            self.client = self._plain(host, port)
            await self.client.ping()

    async def server_version(self) -> tuple[int, ...]:
        if self.opts.cluster:
            node = self.client.get_random_node()
            info = await self.client.info("server", target_nodes=node)
        else:
            info = await self.client.info("server")
        raw = info.get("redis_version") if isinstance(info, dict) else None
        if raw is None and isinstance(info, dict):  # cluster: {node: info}
            first: Any = next(iter(info.values()), {})
            raw = first.get("redis_version") if isinstance(first, dict) else None
        if raw is None:
            raise SchemaError("the server did not report a redis_version")
        return tuple(int(p) for p in str(raw).split(".")[:3] if p.isdigit())

    async def script(self, name: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError

        sha = self.shas.get(name)
        if sha is None:
            sha = self.shas[name] = await self.client.script_load(source)
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            # Script cache flushed (restart, failover, SCRIPT FLUSH): load it again.
            self.shas[name] = await self.client.script_load(source)
            return await self.client.evalsha(self.shas[name], len(keys), *keys, *args)

    async def hscan(self, key: str, cursor: int, count: int) -> tuple[int, dict[bytes, bytes]]:
        # One key: the cluster client routes it to the node owning the namespace's slot.
        next_cursor, page = await self.client.hscan(key, cursor=cursor, count=count)
        return int(next_cursor), page

    async def xrange(self, key: str, low: str, high: str, count: int) -> list[Any]:
        return list(await self.client.xrange(key, min=low, max=high, count=count))

    async def xrevrange(self, key: str, high: str, low: str, count: int) -> list[Any]:
        return list(await self.client.xrevrange(key, max=high, min=low, count=count))

    async def subscribe(self, channel: str) -> None:
        await self.unsubscribe()
        last_exc: Exception | None = None
        nodes: list[tuple[str | None, int | None]] = list(self.opts.nodes) or [(None, None)]
        for host, port in nodes:
            # PUBLISH reaches every node of a cluster, so any one node will do.
            client = self._plain(host, port)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(channel)
            except Exception as exc:  # noqa: BLE001 - try the next node, report the last
                last_exc = exc
                await client.aclose()
                continue
            self.pubsub_client, self.pubsub = client, pubsub
            return
        assert last_exc is not None
        raise last_exc

    async def next_message(self, timeout: float) -> int | None:
        """The change number of the next notification, or ``None`` after ``timeout``."""
        if self.pubsub is None:
            raise ConnectionError("not subscribed")
        msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if msg is None:
            return None
        try:
            return int(msg.get("data", 0))
        except (TypeError, ValueError):
            return 0  # unknown payload: treat as "something changed"

    async def unsubscribe(self) -> None:
        pubsub, client = self.pubsub, self.pubsub_client
        self.pubsub = self.pubsub_client = None
        for closer in (getattr(pubsub, "aclose", None), getattr(client, "aclose", None)):
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:  # noqa: BLE001 - closing a broken connection
                    log.debug("closing a Redis connection failed: %s", exc)

    async def close(self) -> None:
        await self.unsubscribe()
        if self.client is not None:
            client, self.client = self.client, None
            await client.aclose()


def _translate(exc: BaseException, opts: RedisOptions) -> Exception:
    """A redis-py failure as the matching TractorRegError (the cause stays chained)."""
    from redis import exceptions as rex

    where = opts.redacted()
    text = str(exc) or type(exc).__name__
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError):
        return StoreUnavailable(f"{where}: authentication failed: {text}")
    # redis-py strips the error code (NOPERM, NOAUTH, ...) from the message and raises
    # a class per code instead: match the class, not the text.
    if isinstance(exc, rex.NoPermissionError) or (
        isinstance(exc, rex.ResponseError) and ("NOAUTH" in text or "WRONGPASS" in text)
    ):
        return StoreUnavailable(f"{where}: not authorised: {text}")
    if isinstance(exc, rex.InvalidResponse | rex.DataError) or "Protocol" in type(exc).__name__:
        return StoreUnavailable(f"{where}: the server does not speak the Redis protocol ({text})")
    if isinstance(exc, rex.BusyLoadingError):
        return StoreBusy(f"{where}: Redis is loading its dataset ({text})")
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError | TimeoutError):
        return StoreUnavailable(f"{where}: Redis unreachable: {text}")
    if isinstance(exc, rex.RedisError):
        return BackendError(f"{where}: Redis error: {text}")
    return StoreUnavailable(f"{where}: unexpected error: {exc!r}")


# -- trio side ----------------------------------------------------------------------------


def _history_row(raw_fields: Any) -> HistoryRow | tuple[Unreadable, str]:
    """A change-stream row as a :class:`HistoryRow`, or (the revision of a bad one, if
    readable, and what is wrong with it)."""
    fields = _fields(raw_fields)
    try:
        revision: int | None = int(fields[b"r"])
    except (KeyError, ValueError) as exc:
        revision = None
        problem = f"bad revision (r): {exc!r}"
    try:
        if revision is None:
            raise ValueError(problem)
        seq = _change_number(fields)
        if seq is None:
            raise ValueError("no change number")
        uid = _uid_decoder.decode(fields[b"f"])
        kind = fields[b"k"]
        addrs: tuple[AddrTuple, ...] | None
        if kind == b"upsert":
            addrs = _decode_entry(fields[b"e"]).addrs
        elif kind == b"delete":
            # Deletion rows keep the entry since this release; older ones have none.
            old = fields.get(b"e", b"")
            addrs = _decode_entry(old).addrs if old else None
        else:
            raise ValueError(f"bad kind {kind[:60]!r}")
        reason = _text(fields.get(b"w", b""))
    except (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        return revision, what
    return HistoryRow(seq, revision, kind.decode(), uid, addrs, reason)


def _change_number(fields: dict[bytes, bytes]) -> int | None:
    """A change row's number (``q``), or ``None`` when it is missing or not a number."""
    try:
        return int(fields[b"q"])
    except (KeyError, ValueError):
        return None


class RedisBackend(ReplicatedBackend):
    """:class:`~tractor_reg.backends.RegistryBackend` shared through Redis (or a Cluster).

    Writes are stored by Redis before they return; reads are answered from memory.
    Run :meth:`run` while open (``opened_backend`` does) to follow other registrars'
    writes through pub/sub and to reconnect after outages.
    """

    scheme: str = "redis"
    _log = log
    #: Every URL scheme this class serves.
    SCHEMES: tuple[str, ...] = _SCHEMES

    def __init__(self, options: RedisOptions, *, clock: Clock = DEFAULT_CLOCK) -> None:
        super().__init__(clock=clock)
        self.options = options
        self.scheme = options.url.partition("://")[0].lower() or "redis"
        ns = options.namespace
        prefix = f"tractor_reg:{{{ns}}}:v{SCHEMA_VERSION}"
        self.keys = {
            "entries": f"{prefix}:entries",
            "rev": f"{prefix}:rev",
            "seq": f"{prefix}:seq",
            "changes": f"{prefix}:changes",
            "schema": f"tractor_reg:{{{ns}}}:schema",
        }
        self.channel = f"tractor_reg:{{{ns}}}:v{SCHEMA_VERSION}:notify"
        self._bridge = AsyncioThread(f"tractor_reg-redis:{ns}")
        self._conn: _Conn | None = None
        self._seq = 0
        self._last_id = "0-0"
        self._sync_lock = trio.Lock()
        self._healthy = False
        self._synced_at = 0.0
        self._run_scope = trio.CancelScope()
        self._run_active = False
        self._run_exited = trio.Event()
        self._store_ok = trio.Event()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = DEFAULT_CLOCK) -> Self:
        return cls(parse_redis_url(url), clock=clock)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return f"<RedisBackend {self.options.redacted()} {state}>"

    @property
    def healthy(self) -> bool:
        """True while the last exchange with Redis succeeded."""
        return self._healthy

    # -- plumbing --------------------------------------------------------------------------

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return await self._bridge.run(fn, *args)
        except TractorRegError:
            raise
        except Exception as exc:
            self._healthy = False
            raise _translate(exc, self.options) from exc

    def _require_conn(self) -> _Conn:
        if self._conn is None:
            raise BackendClosed("redis backend is closed")
        return self._conn

    async def _script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self._call(self._require_conn().script, name, source, keys, args)

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the server version and the key layout, load the view."""
        if self._closed:
            raise BackendClosed("redis backend is closed")
        if self._opened:
            raise BackendError("redis backend is already opened")
        await self._bridge.start()
        ok = False
        try:
            self._conn = _Conn(self.options)
            with trio.fail_after(self.options.connect_timeout * 3 + 1) as _:
                await self._call(self._conn.connect)
                version = await self._call(self._conn.server_version)
            if version < MIN_REDIS_VERSION:
                need = ".".join(map(str, MIN_REDIS_VERSION))
                have = ".".join(map(str, version))
                raise SchemaError(
                    f"{self.options.redacted()} runs Redis {have}; tractor_reg needs Redis "
                    f">= {need} (exclusive XRANGE, scripting with streams)"
                )
            await self._check_layout()
            await self._view.open()
            await self._reload()
            ok = True
        except trio.TooSlowError as exc:
            raise StoreUnavailable(f"{self.options.redacted()}: no answer from Redis") from exc
        finally:
            if not ok:
                await self._release()
        self._opened = True
        self._healthy = True

    async def _check_layout(self) -> None:
        conn = self._require_conn()

        async def check(c: _Conn) -> Any:
            await c.client.set(self.keys["schema"], str(SCHEMA_VERSION), nx=True)
            return await c.client.get(self.keys["schema"])

        found = await self._call(check, conn)
        if found is None or _text(found) != str(SCHEMA_VERSION):
            raise SchemaError(
                f"namespace {self.options.namespace!r} on {self.options.redacted()} uses key "
                f"layout v{_text(found)}, this tractor_reg uses v{SCHEMA_VERSION}"
            )

    async def _release(self) -> None:
        with trio.CancelScope(shield=True):
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    await self._bridge.run(conn.close)
                except Exception as exc:  # noqa: BLE001 - closing; nothing left to protect
                    log.debug("closing Redis connections failed: %s", exc)
            await self._bridge.aclose()

    async def aclose(self) -> None:
        """Close connections and the bridge thread; wake waiters. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            # Stop the follower first: its in-flight Redis calls must finish unwinding
            # before their connections are closed under them.
            self._run_scope.cancel()
            if self._run_active:
                await self._run_exited.wait()
            async with self._sync_lock:
                await self._release()
            await self._view.aclose()

    async def run(self) -> None:
        """Follow other registrars' writes and survive outages; runs until cancelled."""
        self._run_active = True
        try:
            with self._run_scope:
                await self._follow()
        finally:
            self._run_active = False
            self._run_exited.set()

    async def _follow(self) -> None:
        backoff = 0.1
        conn = self._require_conn()
        while not self._closed:
            try:
                await self._call(conn.subscribe, self.channel)
                # Anything written while we were not subscribed: replay before trusting.
                await self.poll()
                if not self._healthy:
                    log.warning(
                        "Redis %s is back; the registry view is current again",
                        self.options.redacted(),
                    )
                self._healthy = True
                backoff = 0.1
                while True:
                    notice = await self._call(conn.next_message, self.options.poll_interval)
                    if notice is not None and 0 < notice <= self._seq:
                        continue  # our own write (or one we replayed already)
                    await self.poll()
            except BackendClosed:
                return
            except Exception as exc:
                if not isinstance(exc, BackendError):
                    log.exception("following Redis %s failed unexpectedly", self.options.redacted())
                if self._healthy or backoff == 0.1:
                    age = time.time() - self._synced_at if self._synced_at else float("nan")
                    log.warning(
                        "lost Redis %s (%s); answering lookups from the last coherent view "
                        "(%.1f s old); writes fail until it is back",
                        self.options.redacted(),
                        exc,
                        age,
                    )
                self._healthy = False
                # Back off, but not past a second (a stale view must not outlive Redis's
                # return by much), and retry at once when a write just got through.
                with trio.move_on_after(backoff):
                    await self._store_ok.wait()
                self._store_ok = trio.Event()
                backoff = min(backoff * 2, max(1.0, min(self.options.poll_interval, 5.0)))

    # -- the view ------------------------------------------------------------------------

    async def poll(self) -> None:
        """Replay every change stored since the last look (reloading if Redis lost data)."""
        self._check_usable()
        async with self._sync_lock:
            await self._catch_up()

    async def _catch_up(self) -> None:
        keys = [self.keys["seq"], self.keys["changes"], self.keys["rev"]]
        while True:
            reply = await self._script("since", _SINCE, keys, [self._last_id, 1000])
            seq, rows, store_revision = int(reply[0]), reply[1], int(reply[2])
            if seq < self._seq:
                log.warning(
                    "Redis %s lost the registry (change #%d, we had seen #%d): reloading; "
                    "live actors re-register on their next renewal",
                    self.options.redacted(),
                    seq,
                    self._seq,
                )
                await self._reload()
                return
            if not rows:
                if seq != self._seq:
                    await self._reload()  # the stream was trimmed past what we saw
                    return
                self._view.apply_revision(store_revision)
                return
            first_q = _change_number(_fields(rows[0][1]))
            if first_q != self._seq + 1:
                log.info("fell behind the change stream; reloading the registry view")
                await self._reload()
                return
            self._apply_rows(rows)
            self._synced_at = time.time()
            if len(rows) < 1000:
                self._view.apply_revision(store_revision)
                return

    def _apply_rows(self, rows: list[Any]) -> None:
        top_revision = 0
        for stream_id, raw_fields in rows:
            fields = _fields(raw_fields)
            self._last_id = _text(stream_id)
            q = _change_number(fields)
            if q is None:
                # Edited by hand: its place in the sequence is the next one.
                self._seq += 1
                self._skip(self._bad_change(self._last_id, "no change number (q)"))
                continue
            self._seq = q
            try:
                revision = int(fields[b"r"])
                top_revision = max(top_revision, revision)
                uid = _uid_decoder.decode(fields[b"f"])
                row = "delete" if fields[b"k"] == b"delete" else "upsert"
                change = change_for(row, _text(fields.get(b"w", b"")), revision)
                if row == "delete":
                    self._view.apply_delete(uid, change)
                else:
                    self._view.apply_upsert(_decode_entry(fields[b"e"]), change)
            except (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                self._skip(self._bad_change(self._last_id, what))
        self._view.apply_revision(top_revision)

    async def _reload(self) -> None:
        """Replace the view with what Redis stores, without showing readers a half-load."""
        keys = [self.keys["entries"], self.keys["rev"], self.keys["seq"], self.keys["changes"]]
        reply = await self._script("snapshot", _SNAPSHOT, keys, [_PAGED_LOAD_FROM])
        if not isinstance(reply[3], list):
            if await self._load_paged(int(reply[0]), int(reply[1]), _text(reply[2])):
                return
            # The stream no longer reaches back to where the scan started: the atomic
            # reply is the one way left that cannot be outrun by writers.
            log.info(
                "namespace %r changed faster than it could be loaded in pages; "
                "loading it in one reply",
                self.options.namespace,
            )
            reply = await self._script("snapshot", _SNAPSHOT, keys, [0])
        revision, seq, last_id, flat = int(reply[0]), int(reply[1]), _text(reply[2]), reply[3]
        entries: list[Entry] = []
        for i in range(0, len(flat), 2):
            entry = self._decode_stored(flat[i], flat[i + 1])
            if entry is not None:
                entries.append(entry)
        del flat, reply
        history = await self._history_upto(last_id, revision)
        if self._install(entries, revision, seq, last_id):
            # Watchers resume across a restart: the stream's newest rows are the history.
            self._view.load_history(*history)

    async def _load_paged(self, revision: int, seq: int, last_id: str) -> bool:
        """Load the hash with HSCAN, then replay the changes committed meanwhile.

        A scan is no snapshot: each field is read as it is when the cursor passes it. But
        every write after the head (``revision``/``seq``/``last_id``) is also a row of
        the change stream, so replaying the stream from the head up to a second head read
        after the scan ends at the store's state then. Entries registered after the head
        are left to that replay, which moves each to its name's newest place in revision
        order; loaded with the scan they would keep their place when replayed and end up
        older than a registration the scan missed. Returns False (view untouched) when
        the stream was trimmed past the head meanwhile.
        """
        conn = self._require_conn()
        key = self.keys["entries"]
        entries: list[Entry] = []
        newer: dict[bytes, Entry] = {}
        bad: set[bytes] = set()  # HSCAN may return a field twice: count a bad one once
        cursor = 0
        while True:
            cursor, page = await self._call(conn.hscan, key, cursor, _LOAD_PAGE)
            for field_, raw in page.items():
                entry = self._decode_stored(field_, raw, bad)
                if entry is None:
                    continue
                if entry.revision > revision:
                    newer[field_] = entry
                else:
                    entries.append(entry)
            del page  # decoded: let the raw page go before the next one arrives
            if cursor == 0:
                break
        keys = [key, self.keys["rev"], self.keys["seq"], self.keys["changes"]]
        tail = await self._script("snapshot", _SNAPSHOT, keys, [1])
        end_revision, end_seq, end_id = int(tail[0]), int(tail[1]), _text(tail[2])
        rows = await self._changes_between(seq, last_id, end_seq, end_id)
        if rows is None:
            return False
        for _, raw_fields in rows:
            newer.pop(_fields(raw_fields).get(b"f", b""), None)
        # Newer entries no change covers mean keys edited beside the scripts: keep them,
        # as the one-reply load would.
        entries.extend(newer.values())
        del newer
        # The history up to the second head, read from the stream: the replay below
        # records nothing for a row whose entry the scan already missed (deleted
        # between the first head and the scan), so its log alone would have holes.
        history = await self._history_upto(end_id, end_revision)
        keep_history = self._install(entries, revision, seq, last_id)
        self._apply_rows(rows)
        self._seq, self._last_id = end_seq, end_id
        self._view.apply_revision(end_revision)
        if keep_history:
            self._view.load_history(*history)
        log.debug(
            "namespace %r: loaded in pages; replayed %d changes committed during the load",
            self.options.namespace,
            len(rows),
        )
        return True

    async def _changes_between(
        self, seq: int, after_id: str, end_seq: int, end_id: str
    ) -> list[Any] | None:
        """The change rows after ``after_id`` up to ``end_id`` (changes ``seq + 1`` to
        ``end_seq``), or None if the stream no longer holds every one of them."""
        if end_seq == seq:
            return [] if end_id == after_id else None
        if end_seq < seq:
            return None  # Redis lost data during the load
        conn = self._require_conn()
        rows: list[Any] = []
        expect = seq + 1
        while expect <= end_seq:
            page = await self._call(
                conn.xrange, self.keys["changes"], "(" + after_id, end_id, _LOAD_PAGE
            )
            if not page:
                return None
            first = _change_number(_fields(page[0][1]))
            if first != expect:
                return None  # trimmed past the rows we still needed
            rows.extend(page)
            after_id = _text(page[-1][0])
            expect = first + len(page)
        return rows if after_id == end_id and expect == end_seq + 1 else None

    def _decode_stored(
        self, field_: bytes, raw: bytes, bad: set[bytes] | None = None
    ) -> Entry | None:
        """The entry a hash field holds, or None (counted and logged) if it is invalid."""
        try:
            entry = _decode_entry(raw)
            if _field(entry.uid) != field_:
                raise ValueError("hash field does not match the entry's uid")
            return entry
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            if bad is not None:
                if field_ in bad:
                    return None
                bad.add(field_)
            self._skip(BadRow("entry", self.keys["entries"], f"field {field_[:200]!r}", str(exc)))
            return None

    def _bad_change(self, stream_id: str, reason: str) -> BadRow:
        return BadRow("change", self.keys["changes"], f"entry {stream_id}", reason)

    def _history_item(self, stream_id: Any, raw_fields: Any) -> HistoryRow | Unreadable:
        item = _history_row(raw_fields)
        if isinstance(item, HistoryRow):
            return item
        revision, reason = item
        self._skip(self._bad_change(_text(stream_id), reason))
        return revision

    def _where(self) -> str:
        return f"namespace {self.options.namespace!r}"

    def _install(self, entries: list[Entry], revision: int, seq: int, last_id: str) -> bool:
        """Make ``entries`` the view in one step (no await: readers never see half).

        Returns whether the stream's history may become the view's: not when Redis is
        behind the view (restored from an older copy), so that watchers between the two
        revisions get ChangesExpired rather than silence.
        """
        behind = revision < self._view.current_revision
        entries.sort(key=revision_of)  # the view orders each name's entries by revision
        self._view.reset()
        for entry in one_holder_per_address(entries, self._where()):
            self._view.apply_upsert(entry)
        self._seq, self._last_id = seq, last_id
        self._view.apply_revision(revision)
        self._view.start_history(max(revision, self._view.current_revision))
        self._synced_at = time.time()
        return not behind

    async def _history_upto(self, last_id: str, revision: int) -> tuple[list[Change], int]:
        """The change history kept in the stream up to ``last_id`` (the loaded head)."""
        if last_id in ("", "0-0"):
            return [], revision
        conn = self._require_conn()
        items: list[HistoryRow | Unreadable] = []  # newest first
        high = last_id
        while len(items) < _HISTORY_ROWS:
            # In pages, each turned into compact rows at once: one reply of 10,000 raw
            # stream entries would briefly cost tens of MB.
            count = min(_LOAD_PAGE, _HISTORY_ROWS - len(items))
            page = await self._call(conn.xrevrange, self.keys["changes"], high, "-", count)
            items.extend(self._history_item(sid, fields) for sid, fields in page)
            if len(page) < count:
                break
            high = "(" + _text(page[-1][0])
        items.reverse()
        return build_history(items, revision)

    # -- writes --------------------------------------------------------------------------

    async def _commit_batch(self, batch: list[Op]) -> None:
        try:
            async with self._sync_lock:
                if self._closed or self._conn is None:
                    raise BackendClosed("redis backend is closed")
                verified = False
                for _ in range(_MAX_CONFLICT_RETRIES):
                    plan = await plan_batch(self._view, batch, self._clock())
                    if plan.empty:
                        if not verified and _refused(plan):
                            # A refusal writes nothing, so no script checks the view it
                            # was decided on: replay what others wrote, then decide.
                            verified = True
                            await self._catch_up()
                            continue
                        self._deliver(batch, plan)
                        return
                    reply = await self._script(
                        "apply", _APPLY, self._apply_keys(), self._apply_args(plan)
                    )
                    if int(reply[0]) == 1:
                        self._seq, self._last_id = int(reply[1]), _text(reply[2])
                        self._apply_plan(plan)
                        self._synced_at = time.time()
                        self._store_ok.set()  # wakes a follower backing off
                        self._deliver(batch, plan)
                        return
                    # Another registrar wrote first: replay its changes and plan again.
                    await self._catch_up()
                raise StoreBusy(
                    f"{self.options.redacted()}: gave up after {_MAX_CONFLICT_RETRIES} "
                    "conflicting concurrent writes"
                )
        except TractorRegError as exc:
            for op in batch:
                op.error = exc
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            # A reply of an unexpected shape (keys edited by hand): fail every op loudly.
            error = BackendError(f"{self.options.redacted()}: unexpected reply from Redis: {exc}")
            error.__cause__ = exc
            for op in batch:
                op.error = error

    def _apply_keys(self) -> list[str]:
        k = self.keys
        return [k["entries"], k["rev"], k["seq"], k["changes"]]

    def _apply_args(self, plan: Plan) -> list[Any]:
        args: list[Any] = [
            self._seq,
            plan.revision,
            self.options.change_retention,
            self.channel,
            len(plan.upserts),
        ]
        encoded: list[tuple[bytes, bytes]] = []
        for entry, _ in plan.upserts:
            pair = (_field(entry.uid), _entry_encoder.encode(entry))
            encoded.append(pair)
            args.extend(pair)
        args.append(len(plan.deletes))
        args.extend(_field(uid) for uid, _ in plan.deletes)
        args.append(len(plan.deletes) + len(plan.upserts))
        for uid, reason in plan.deletes:
            # The entry as it was (the plan is applied to the view after the commit):
            # history read back from the stream reports its addresses.
            gone = self._view.raw_entry(uid)
            old = b"" if gone is None else _entry_encoder.encode(gone)
            args.extend([b"delete", _field(uid), old, reason])
        for (field_, json_), (_, reason) in zip(encoded, plan.upserts, strict=True):
            args.extend([b"upsert", field_, json_, reason])
        return args


def _refused(plan: Plan) -> bool:
    return any(isinstance(error, PermissionDenied) for _, error in plan.outcomes)


def _fields(raw: Any) -> dict[bytes, bytes]:
    """Stream entry fields as a dict (redis-py gives a flat list from scripts)."""
    if isinstance(raw, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in raw.items()}
    it = iter(raw)
    return {
        (k if isinstance(k, bytes) else str(k).encode()): (
            v if isinstance(v, bytes) else str(v).encode()
        )
        for k, v in zip(it, it, strict=False)
    }
