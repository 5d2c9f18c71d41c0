"""Decoding the rows of a SQLite registry file, and saying exactly what is wrong with one
that cannot be decoded.

A row edited by hand (or by a broken tool) may hold anything a SQLite column can: text
that is not valid UTF-8, a number where text belongs, addresses that are not the JSON
this package writes. Such a row is never fatal: each decoder raises :class:`RowError`
naming the column and the reason, and the callers skip the row and report it.

Text that is not valid UTF-8 is special: the ``sqlite3`` module fails the whole fetch on
it, before any of this code sees the row. A connection that meets it switches to
:func:`lenient_text`, which hands such a value over as :class:`BadText` instead.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from ._base import OWNER_DIGEST_SIZE, AddrTuple, Entry, Uid
from ._replica import HistoryRow, interned_addrs

#: The columns of an ``entries`` row, in the order the decoders take them.
ENTRY_COLUMNS = "name, uuid, addrs, revision, registered_at, expires_at, registrar"
#: The columns of a ``changes`` row, in the order :func:`change_from_row` takes them.
CHANGE_COLUMNS = (
    "seq, store_revision, kind, name, uuid, addrs, revision, registered_at, expires_at, "
    "registrar, reason"
)
#: The same with the owner digest last (schema version 3 on): what the backend reads.
#: The plain forms read a file of any version (``check``).
OWNED_ENTRY_COLUMNS = ENTRY_COLUMNS + ", owner"
OWNED_CHANGE_COLUMNS = CHANGE_COLUMNS + ", owner"


class BadText(bytes):
    """A TEXT value that is not valid UTF-8: its raw bytes, as :func:`lenient_text` reads it."""

    def __repr__(self) -> str:
        return f"<not UTF-8: {bytes(self[:60])!r}{'...' if len(self) > 60 else ''}>"


def lenient_text(data: bytes) -> str | BadText:
    """A ``text_factory`` that reads text that is not UTF-8 as :class:`BadText`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return BadText(data)


def undecodable_text(exc: BaseException) -> bool:
    """Whether ``exc`` is the ``sqlite3`` module failing a fetch on text that is not UTF-8."""
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(
        "Could not decode to UTF-8"
    )


class RowError(ValueError):
    """A stored row that cannot be decoded: which column, and why."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column}: {reason}")
        self.column = column
        self.reason = reason


def shown(value: object, limit: int = 120) -> str:
    """A stored value for a message: bounded, and saying what kind of value it is."""
    if isinstance(value, BadText):
        return repr(value)
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_SocketFile = Annotated[str, msgspec.Meta(min_length=1, pattern="^[^/]+$")]
# Typed decoding validates a row's addresses in C: at 100,000 rows json.loads plus
# checks in Python was most of a cold start.
_ADDRS_DECODER = msgspec.json.Decoder(tuple[tuple[str, _Port | _SocketFile], ...])


def decode_addrs(raw: object, column: str = "addrs") -> tuple[AddrTuple, ...]:
    if type(raw) is not str:
        raise RowError(column, f"not text: {shown(raw)}")
    try:
        items = _ADDRS_DECODER.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise RowError(column, f"bad addresses {shown(raw)}: {exc}") from exc
    if not items:
        raise RowError(column, f"not a non-empty list of addresses: {shown(raw)}")
    return interned_addrs(items)


def _text(value: object, column: str, *, empty: bool = False) -> str:
    if isinstance(value, BadText):
        raise RowError(column, f"text that is not valid UTF-8: {bytes(value[:60])!r}")
    if type(value) is not str:
        raise RowError(column, f"not text: {shown(value)}")
    if not value and not empty:
        raise RowError(column, "empty")
    return value


def _integer(value: object, column: str) -> int:
    if type(value) is not int:
        raise RowError(column, f"not an integer: {shown(value)}")
    return value


def _time(value: object, column: str) -> float:
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RowError(column, f"not a number: {shown(value)}")
        value = float(value)
    if not math.isfinite(value):
        raise RowError(column, f"not a finite number: {value!r}")
    return value


def owner_digest(value: object) -> bytes:
    """A stored owner: a 32-byte digest, or ``b""`` (unowned: NULL or empty, as rows
    written before owners existed) which the entry's next registration adopts.

    Anything else is damage, and a :class:`RowError`: read as "unowned" it would let
    anyone take the entry over, so the row is skipped and reported instead.
    """
    if value is None or value == b"":
        return b""
    if type(value) is bytes and len(value) == OWNER_DIGEST_SIZE:
        return value
    raise RowError("owner", f"not a {OWNER_DIGEST_SIZE}-byte digest: {shown(value)}")


def entry_from_row(row: Sequence[Any], owner: object = b"") -> Entry:
    """A row (name, uuid, addrs, revision, registered_at, expires_at, registrar, ...) as an
    Entry owned by ``owner``; columns after those seven are ignored. Raises
    :class:`RowError`."""
    name, uuid, revision, registered_at, expires_at, registrar = (
        row[0],
        row[1],
        row[3],
        row[4],
        row[5],
        row[6],
    )
    # The common case in one test (a cold start decodes every row); the column-by-column
    # checks below run for rows that fail it, to accept integral times or to explain.
    if not (
        type(name) is str
        and name
        and type(uuid) is str
        and uuid
        and type(revision) is int
        and type(registered_at) is float
        and type(expires_at) is float
        and type(registrar) is str
        and math.isfinite(registered_at)
        and math.isfinite(expires_at)
    ):
        name = _text(name, "name")
        uuid = _text(uuid, "uuid")
        revision = _integer(revision, "revision")
        registered_at = _time(registered_at, "registered_at")
        expires_at = _time(expires_at, "expires_at")
        registrar = _text(registrar, "registrar", empty=True)
    return Entry(
        name=name,
        uuid=uuid,
        addrs=decode_addrs(row[2]),
        revision=revision,
        registered_at=registered_at,
        expires_at=expires_at,
        registrar=sys.intern(registrar),
        owner=owner_digest(owner),
    )


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One decoded ``changes`` row."""

    seq: int
    store_revision: int
    kind: str  # "upsert" or "delete"
    uid: Uid
    #: The new state of an upsert; None for a deletion.
    entry: Entry | None
    #: The addresses of an upsert, or those a deletion removed (None in older rows).
    addrs: tuple[AddrTuple, ...] | None
    reason: str


def change_from_row(row: Sequence[Any]) -> StoredChange:
    """A row in :data:`CHANGE_COLUMNS` (or :data:`OWNED_CHANGE_COLUMNS`) order, decoded.
    Raises :class:`RowError`."""
    seq = _integer(row[0], "seq")
    store_revision = _integer(row[1], "store_revision")
    kind = row[2]
    if kind not in ("upsert", "delete") or type(kind) is not str:
        raise RowError("kind", f"neither 'upsert' nor 'delete': {shown(kind)}")
    uid = (_text(row[3], "name"), _text(row[4], "uuid"))
    reason = _text(row[10], "reason", empty=True)
    if kind == "upsert":
        entry: Entry | None = entry_from_row(row[3:10], row[11] if len(row) > 11 else b"")
        assert entry is not None
        addrs: tuple[AddrTuple, ...] | None = entry.addrs
    else:
        entry = None
        # A deletion row may have no addresses (older releases did not keep them).
        addrs = None if row[5] is None else decode_addrs(row[5])
    return StoredChange(seq, store_revision, kind, uid, entry, addrs, reason)


def history_row(change: StoredChange) -> HistoryRow:
    return HistoryRow(
        change.seq, change.store_revision, change.kind, change.uid, change.addrs, change.reason
    )
