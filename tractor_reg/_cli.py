"""The ``tractor-reg`` command line: run a registrar, operate a registry, maintain a store.

Three groups of commands:

* ``serve`` runs a standalone registrar until SIGINT/SIGTERM.
* Admin commands (``ls``, ``find``, ``wait``, ``watch``, ``rm``, ``stats``) talk to running
  registrars through :func:`~tractor_reg.open_registry_client`, which never becomes a
  registrar and never registers itself.
* Store commands (``migrate``, ``check``, ``export``, ``import``, ``prune``) work on a
  backend URL directly, with or without a registrar running on it.

Configuration comes from flags, then the environment (:data:`ENV_BACKEND`,
:data:`ENV_REGISTRY_ADDRS`, :data:`ENV_LOG_LEVEL`), then defaults. Every error is one
``tractor-reg: error: ...`` line on stderr (a traceback follows only with
``--log-level debug``); usage errors exit with 2, other failures with 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sqlite3
import sys
import textwrap
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

import trio

from ._actor import CONNECT_ERRORS, Actor
from ._addr import (
    DEFAULT_REGISTRY_HOST,
    DEFAULT_REGISTRY_PORT,
    Address,
    coerce_address,
    parse_address,
    prefer_addr,
    unwrap_address,
)
from ._budget import DEFAULT_MAX_BUFFERED_BYTES
from ._discovery import WAIT_POLL
from ._exceptions import (
    AddressError,
    BackendURLError,
    ChangesExpired,
    RegistryUnavailable,
    RemoteActorError,
    TractorRegError,
)
from ._ipc import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_FRAME_SIZE
from ._log import HONOUR_ENV_LOGLEVEL, check_level, level_value, setup_logging
from ._registrar import DEFAULT_MAX_LEASE_TTL, RegistryLimits
from ._root import (
    ENV_BACKEND,
    ENV_REGISTRY_ADDRS,
    open_registry_client,
    open_root_actor,
    probe_registry,
)
from ._security import (
    ENV_SECRET_FILE,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    Security,
    TLSConfig,
)
from ._util import collapse_eg
from .backends import AddrTuple, Entry, RegistryBackend, open_backend, opened_backend
from .backends._open import redact_url
from .backends._replica import ReplicatedBackend

__all__ = ["ENV_LOG_LEVEL", "build_parser", "default_backend_url", "main"]

log = logging.getLogger("tractor_reg.cli")

PROG = "tractor-reg"
#: Log level of every command when neither ``--log-level`` nor this is given.
ENV_LOG_LEVEL = "TRACTOR_REG_LOG_LEVEL"
#: Where the per-user state directory is (XDG base directory spec).
ENV_STATE_HOME = "XDG_STATE_HOME"
DEFAULT_LISTEN = f"tcp://{DEFAULT_REGISTRY_HOST}:{DEFAULT_REGISTRY_PORT}"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Registrations sent to a store at once by ``import`` (the backends group-commit them).
IMPORT_BATCH = 128

_ENV_HELP = {
    ENV_REGISTRY_ADDRS: "comma-separated registry addresses, e.g. "
    "tcp://HOST:PORT,uds:///PATH or multiaddrs /ip4/ADDR/tcp/PORT,/unix/PATH "
    f"(default {DEFAULT_LISTEN})",
    ENV_BACKEND: "backend URL (default: a SQLite file in the state directory)",
    ENV_LOG_LEVEL: "a log level, as --log-level takes",
    ENV_STATE_HOME: "the per-user state directory (default ~/.local/state); the default "
    "backend is $XDG_STATE_HOME/tractor_reg/registry.db",
    ENV_SECRET_FILE: "file holding the shared secret peers must prove (>= 16 bytes)",
    ENV_TLS_CERT: "TLS certificate chain (PEM) for TCP connections",
    ENV_TLS_KEY: "TLS private key (PEM)",
    ENV_TLS_CA: "CA bundle that peers' TLS certificates must chain to",
}


class CLIError(Exception):
    """A failure to report as one ``tractor-reg: error:`` line with exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# -- defaults and configuration ------------------------------------------------------------


def default_backend_url() -> str:
    """``sqlite://`` URL of the per-user default store (durable with no set-up).

    ``$XDG_STATE_HOME/tractor_reg/registry.db``, else ``~/.local/state/tractor_reg/registry.db``
    (a relative ``$XDG_STATE_HOME`` is ignored, as the XDG spec says).
    """
    base = os.environ.get(ENV_STATE_HOME, "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return "sqlite:///" + os.path.abspath(os.path.join(base, "tractor_reg", "registry.db"))


def _registry_addrs(given: list[Address] | None) -> list[Address]:
    """``--registry``/``--listen`` addresses, else ``$TRACTOR_REG_REGISTRY_ADDRS``, else default."""
    if given:
        return given
    raw = os.environ.get(ENV_REGISTRY_ADDRS, "").strip()
    if not raw:
        return [parse_address(DEFAULT_LISTEN)]
    try:
        return [parse_address(part.strip()) for part in raw.split(",") if part.strip()]
    except AddressError as exc:
        raise CLIError(f"${ENV_REGISTRY_ADDRS}: {exc}", EXIT_USAGE) from exc


def _backend_url(given: str | None) -> str:
    """``--backend``, else ``$TRACTOR_REG_BACKEND``, else :func:`default_backend_url`;
    checked (without I/O) so a malformed URL is a usage error."""
    url = given or os.environ.get(ENV_BACKEND, "").strip() or default_backend_url()
    try:
        open_backend(url)
    except BackendURLError as exc:
        source = "--backend" if given else f"${ENV_BACKEND}"
        raise CLIError(f"{source}: {exc}", EXIT_USAGE) from exc
    return url


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() or url.partition(":")[0].lower()


# -- argument parsing ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as ``usage: ...`` plus one ``tractor-reg: error: ...`` line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        where = self.prog.removeprefix(PROG).strip()
        prefix = f"{where}: " if where else ""
        self.exit(EXIT_USAGE, f"{PROG}: error: {prefix}{message}\n")


def _addr_arg(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _level_arg(text: str) -> str:
    try:
        return check_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _count_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def _add_limit_flags(serve: argparse.ArgumentParser) -> None:
    """The resource limits of a registrar (docs/security.md#limits), each defaulting to
    the library's default."""
    group = serve.add_argument_group("limits (see docs/security.md)")
    counts = (
        ("--max-connections", "inbound connections served at once", "4096"),
        ("--max-connections-per-host", "...of which one peer host may hold", "1024"),
        ("--max-calls-per-channel", "calls running at once for one connection", "1024"),
        ("--max-calls", "calls running at once in the registrar", "16384"),
        ("--max-frame-size", "largest frame payload accepted, in bytes", "4194304"),
        ("--max-buffered-bytes", "frame payloads buffered at once in total", "67108864"),
        ("--max-entries", "live entries in the registry", "1000000"),
        ("--max-entries-per-peer", "live entries registered from one peer host", "100000"),
        ("--max-addrs-per-uid", "addresses one actor may register", "16"),
    )
    for flag, what, default in counts:
        group.add_argument(
            flag, type=_count_arg, default=None, metavar="N", help=f"{what} (default: {default})"
        )
    seconds = (
        ("--handshake-timeout", "deadline for a new connection's handshake", "5"),
        ("--frame-deadline", "deadline for the rest of a frame once it started", "30"),
        ("--peer-log-interval", "least seconds between two warnings about one peer host", "10"),
    )
    for flag, what, default in seconds:
        group.add_argument(
            flag,
            type=_positive_arg,
            default=None,
            metavar="SECONDS",
            help=f"{what} (default: {default})",
        )


#: serve flags passed to open_root_actor under the same name, and to RegistryLimits.
_ROOT_LIMITS = (
    "max_connections",
    "max_connections_per_host",
    "max_calls_per_channel",
    "max_calls",
    "max_frame_size",
    "max_buffered_bytes",
    "handshake_timeout",
    "frame_deadline",
    "peer_log_interval",
)
_REGISTRY_LIMITS = ("max_entries", "max_entries_per_peer", "max_addrs_per_uid", "max_lease_ttl")


def _limit_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        name: getattr(args, name) for name in _ROOT_LIMITS if getattr(args, name) is not None
    }
    registry = {
        name: getattr(args, name) for name in _REGISTRY_LIMITS if getattr(args, name) is not None
    }
    if registry:
        kwargs["limits"] = RegistryLimits(**registry)
    frame = kwargs.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE)
    if kwargs.get("max_buffered_bytes", DEFAULT_MAX_BUFFERED_BYTES) < frame:
        raise CLIError(
            f"--max-buffered-bytes must be at least the frame size ({frame} bytes): "
            "one whole frame must fit"
        )
    return kwargs


def _revision_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a revision is an integer >= 0, got {text!r}")
    return int(text)


def _epilog(*names: str) -> str:
    lines = ["environment (flags take precedence):"]
    for name in names:
        lines.append(f"  {name}")
        lines += textwrap.wrap(
            _ENV_HELP[name], width=88, initial_indent="      ", subsequent_indent="      "
        )
    return "\n".join(lines)


_ADMIN_ENV = (
    ENV_REGISTRY_ADDRS,
    ENV_LOG_LEVEL,
    ENV_SECRET_FILE,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TLS_CA,
)
_STORE_ENV = (ENV_BACKEND, ENV_STATE_HOME, ENV_LOG_LEVEL)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG,
        description="Run and operate a tractor_reg registry.",
        epilog=_epilog(ENV_REGISTRY_ADDRS, ENV_BACKEND, ENV_LOG_LEVEL, ENV_STATE_HOME)
        + "\n\nexit codes: 0 success, 1 failure, 2 usage error, 130 interrupted"
        + f"\nrun `{PROG} COMMAND --help` for the options of a command.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_log_options(parser, argparse.SUPPRESS)

    common = _Parser(add_help=False)
    _add_log_options(common, argparse.SUPPRESS)

    admin = _Parser(add_help=False)
    admin.add_argument(
        "--registry",
        action="append",
        type=_addr_arg,
        default=None,
        metavar="ADDR",
        help="registrar address: tcp://HOST:PORT, uds:///PATH or a multiaddr "
        "(/ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT, /unix/PATH); repeatable (default: "
        f"${ENV_REGISTRY_ADDRS}, else {DEFAULT_LISTEN})",
    )
    admin.add_argument("--json", action="store_true", help="print JSON instead of text")

    secure = _Parser(add_help=False)
    secure.add_argument(
        "--secret-file",
        default=None,
        metavar="PATH",
        help=f"shared secret for authentication (default: ${ENV_SECRET_FILE}); every peer "
        "must know it; it never crosses the wire",
    )
    secure.add_argument(
        "--tls-cert",
        default=None,
        metavar="PATH",
        help=f"TLS certificate chain for TCP (default: ${ENV_TLS_CERT})",
    )
    secure.add_argument(
        "--tls-key", default=None, metavar="PATH", help=f"TLS private key (default: ${ENV_TLS_KEY})"
    )
    secure.add_argument(
        "--tls-ca",
        default=None,
        metavar="PATH",
        help=f"CA bundle peers' certificates must chain to (default: ${ENV_TLS_CA})",
    )

    store = _Parser(add_help=False)
    store.add_argument(
        "--backend",
        default=None,
        metavar="URL",
        help=f"backend URL (default: ${ENV_BACKEND}, else the SQLite file in the state "
        "directory that `serve` uses by default)",
    )
    store.add_argument("--json", action="store_true", help="print JSON instead of text")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        helptext: str,
        description: str,
        parents: list[_Parser],
        env: Sequence[str],
    ) -> argparse.ArgumentParser:
        inherited: list[_Parser] = [*parents, common]
        cmd = sub.add_parser(
            name,
            help=helptext,
            description=textwrap.fill(description, width=88),
            parents=inherited,
            epilog=_epilog(*env),
            formatter_class=fmt,
        )
        # unknown flags are reported with the usage of the command they were given to
        cmd.set_defaults(subparser=cmd)
        return cmd

    serve = command(
        "serve",
        "run a standalone registrar",
        "Run a standalone, long-lived registrar until SIGINT/SIGTERM. Prints "
        "`READY <addresses> backend=<url>` on stdout once it serves.",
        [secure],
        (
            ENV_BACKEND,
            ENV_REGISTRY_ADDRS,
            ENV_STATE_HOME,
            ENV_LOG_LEVEL,
            ENV_SECRET_FILE,
            ENV_TLS_CERT,
            ENV_TLS_KEY,
            ENV_TLS_CA,
        ),
    )
    serve.add_argument(
        "--backend",
        default=None,
        metavar="URL",
        help=f"registry backend URL (default: ${ENV_BACKEND}, else "
        "sqlite:///$XDG_STATE_HOME/tractor_reg/registry.db)",
    )
    serve.add_argument(
        "--listen",
        action="append",
        type=_addr_arg,
        default=None,
        metavar="ADDR",
        help="address to serve on: tcp://HOST:PORT, uds:///PATH or a multiaddr "
        "(/ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT, /unix/PATH); repeatable ("
        f"default: ${ENV_REGISTRY_ADDRS}, else {DEFAULT_LISTEN})",
    )
    serve.add_argument("--name", default="registrar", help="actor name (default: registrar)")
    serve.add_argument(
        "--lease-ttl",
        type=_positive_arg,
        default=None,
        metavar="SECONDS",
        help="lease of a registration that asks for none (default: 30)",
    )
    serve.add_argument(
        "--max-lease-ttl",
        type=_positive_arg,
        default=None,
        metavar="SECONDS",
        help="longest lease granted; a longer ask is granted this long "
        f"(default: {DEFAULT_MAX_LEASE_TTL:g})",
    )
    _add_limit_flags(serve)
    serve.set_defaults(func=_cmd_serve, default_level="info")

    ls = command(
        "ls",
        "list registered actors",
        "List the registered actors: name, uuid, addresses, age, lease left and the "
        "registrar that recorded each.",
        [admin, secure],
        _ADMIN_ENV,
    )
    ls.add_argument("name", nargs="?", help="only actors with this name")
    ls.set_defaults(func=_cmd_ls)

    find = command(
        "find",
        "print the addresses of an actor",
        "Print the addresses of the most recently registered actor called NAME, best first "
        "(exit 1 if there is none).",
        [admin, secure],
        _ADMIN_ENV,
    )
    find.add_argument("name")
    find.add_argument("--all", action="store_true", help="every live actor with that name")
    find.set_defaults(func=_cmd_find)

    wait = command(
        "wait",
        "wait until an actor is registered",
        "Block until an actor called NAME is registered, then print its addresses.",
        [admin, secure],
        _ADMIN_ENV,
    )
    wait.add_argument("name")
    wait.add_argument(
        "--timeout",
        type=_positive_arg,
        default=None,
        metavar="SECONDS",
        help="give up (exit 1) after this long (default: wait forever)",
    )
    wait.set_defaults(func=_cmd_wait)

    watch = command(
        "watch",
        "print registry changes as they happen",
        "Print one line per registry change (registered, updated, unregistered, expired) "
        "until interrupted (Ctrl-C or SIGTERM exit with 0).",
        [admin, secure],
        _ADMIN_ENV,
    )
    watch.add_argument("name", nargs="?", help="only changes of actors with this name")
    watch.add_argument(
        "--since",
        type=_revision_arg,
        default=None,
        metavar="REV",
        help="start after this revision (default: changes from now on)",
    )
    watch.set_defaults(func=_cmd_watch)

    rm = command(
        "rm",
        "remove registrations",
        "Remove the entries called NAME (or the one with uuid UUID). Unless --force, an "
        "entry is only removed once the registrar verified that its actor does not answer.",
        [admin, secure],
        _ADMIN_ENV,
    )
    rm.add_argument("target", metavar="NAME|UUID")
    rm.add_argument("--force", action="store_true", help="remove live actors' entries too")
    rm.set_defaults(func=_cmd_rm)

    stats = command(
        "stats",
        "show registrar statistics",
        "Show entries, lookups/s, registrations/s, waiters, the backend and its health, uptime.",
        [admin, secure],
        _ADMIN_ENV,
    )
    stats.set_defaults(func=_cmd_stats)

    migrate = command(
        "migrate",
        "bring a store's schema up to date",
        "Apply pending schema migrations (sqlite://); report the key layout (redis://).",
        [store],
        _STORE_ENV,
    )
    migrate.add_argument("--dry-run", action="store_true", help="only report what would change")
    migrate.set_defaults(func=_cmd_migrate)

    check = command(
        "check",
        "check a store's health",
        "Check that the store is reachable, its schema version, its integrity, and count "
        "its entries, expired entries and invalid rows (each listed: table, rowid, column, "
        "reason). Exits with 1 when something is wrong. SQLite files are only read (a "
        "read-only file too), unless --repair.",
        [store],
        _STORE_ENV,
    )
    check.add_argument(
        "--quick",
        action="store_true",
        help="SQLite: PRAGMA quick_check instead of the slower, complete integrity_check",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="SQLite: first move every row that cannot be decoded to a quarantine file and "
        "delete it from the database (one transaction; refused for a damaged file)",
    )
    check.add_argument(
        "--quarantine",
        default=None,
        metavar="FILE",
        help="with --repair: write the removed rows here, as JSON lines (default: "
        "DB.quarantine-<UTC time>.jsonl next to the database; never overwritten)",
    )
    check.set_defaults(func=_cmd_check)

    export = command(
        "export",
        "write the live entries as JSON lines",
        "Write every live entry as one JSON object per line: name, uuid, addrs, revision, "
        "registered_at, expires_at, registrar. Rows that cannot be decoded are skipped and "
        "listed on stderr; then the exit status is 1 unless --skip-bad.",
        [store],
        _STORE_ENV,
    )
    export.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="write here (default: stdout)"
    )
    export.add_argument(
        "--skip-bad",
        action="store_true",
        help="exit 0 although rows that cannot be decoded were skipped (they are always "
        "skipped and listed on stderr; without this the exit status is 1)",
    )
    export.set_defaults(func=_cmd_export)

    imp = command(
        "import",
        "register entries from JSON lines",
        "Register the entries of a JSON-lines file (as written by export) into the store, in "
        "file order, each with the lease it has left. Every line is validated first; with "
        "a bad line nothing is imported unless --skip-bad. Expired entries are skipped.",
        [store],
        _STORE_ENV,
    )
    imp.add_argument("file", metavar="FILE", help="JSON-lines file ('-' for stdin)")
    imp.add_argument("--skip-bad", action="store_true", help="import the good lines anyway")
    imp.set_defaults(func=_cmd_import)

    prune = command(
        "prune",
        "delete expired entries",
        "Delete every entry whose lease ran out and print how many.",
        [store],
        _STORE_ENV,
    )
    prune.set_defaults(func=_cmd_prune)
    return parser


def _add_log_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--log-level",
        type=_level_arg,
        default=default,
        metavar="LEVEL",
        help="debug, info, warning, error or critical, or one of tractor's extra levels "
        f"transport, runtime, devx, io, cancel, pdb (default: ${ENV_LOG_LEVEL}, else info for "
        "serve and warning for the other commands); debug and below also show tracebacks",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default,
        help="log line format on stderr (default: text)",
    )


def _log_level(args: argparse.Namespace) -> str:
    given: str | None = getattr(args, "log_level", None)
    if given:
        return given
    raw = os.environ.get(ENV_LOG_LEVEL, "").strip()
    if raw:
        try:
            return check_level(raw)
        except ValueError as exc:
            raise CLIError(f"${ENV_LOG_LEVEL}: {exc}", EXIT_USAGE) from exc
    return str(getattr(args, "default_level", "warning"))


# -- output helpers ------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, flush=True)


def _json_out(doc: Any, *, lines: bool = False) -> None:
    _out(json.dumps(doc) if lines else json.dumps(doc, indent=2))


def _addr_text(addr: Any) -> str:
    try:
        return str(coerce_address(addr))
    except ValueError:
        return repr(addr)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in pairs)


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.total = total
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = tty and total > 0
        self.done = 0
        self._drawn_at = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.done < self.total and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        frac = self.done / self.total
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {frac * 100:3.0f}%")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _registrar_message(exc: RemoteActorError) -> str:
    return exc.remote_message or exc.type_name


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_describe(e) for e in exc.exceptions))
    if isinstance(exc, RemoteActorError):
        return _one_line(f"the registrar answered {exc.type_name}: {_registrar_message(exc)}")
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, TractorRegError | CLIError | OSError | ValueError):
        text = f"{type(exc).__name__}: {text}"
    return _one_line(text)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, AddressError | BackendURLError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# -- signals -------------------------------------------------------------------------------


class _Stop:
    signum: int | None = None


@asynccontextmanager
async def _until_signal() -> AsyncIterator[_Stop]:
    """Run the body until SIGINT/SIGTERM, which cancels it; ``stop.signum`` tells which."""
    stop = _Stop()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, collapse_eg():
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                async for signum in signals:
                    stop.signum = signum
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(listen)
            try:
                yield stop
            finally:
                nursery.cancel_scope.cancel()


# -- serve ---------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    cap = DEFAULT_MAX_LEASE_TTL if args.max_lease_ttl is None else args.max_lease_ttl
    if args.lease_ttl is not None and args.lease_ttl > cap:
        raise CLIError(
            f"--lease-ttl {args.lease_ttl:g} is longer than the longest lease granted "
            f"(--max-lease-ttl {cap:g})",
            EXIT_USAGE,
        )
    listen = _registry_addrs(args.listen)
    backend = _backend_url(args.backend)
    return trio.run(_serve, args, listen, backend)


def _security(args: argparse.Namespace) -> tuple[str | None, TLSConfig | None]:
    secret = getattr(args, "secret_file", None)
    cert, key, ca = (getattr(args, n, None) for n in ("tls_cert", "tls_key", "tls_ca"))
    tls = TLSConfig(cert=cert, key=key, ca=ca) if (cert or ca) else None
    return secret, tls


async def _refuse_taken(listen: list[Address], args: argparse.Namespace) -> None:
    """Clear messages for the usual reasons not to start (open_root_actor re-checks)."""
    results: dict[Address, str] = {}
    secret, tls = _security(args)
    security = Security.resolve(secret, tls)

    async def probe(addr: Address) -> None:
        results[addr] = await probe_registry(addr, DEFAULT_HANDSHAKE_TIMEOUT, security)

    async with trio.open_nursery() as nursery:
        for addr in listen:
            nursery.start_soon(probe, addr)
    for addr in listen:
        if results[addr] == "registrar":
            raise CLIError(f"a registrar already serves at {addr}; not starting a second one there")
        if results[addr] == "occupied":
            raise CLIError(
                f"{addr} is held by something that is not a tractor_reg registrar; not starting"
            )


async def _serve(args: argparse.Namespace, listen: list[Address], backend: str) -> int:
    kwargs: dict[str, Any] = _limit_kwargs(args)
    if args.lease_ttl is not None:
        kwargs["lease_ttl"] = args.lease_ttl
    shown = redact_url(backend)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await _refuse_taken(listen, args)
        secret, tls = _security(args)
        # --log-level / $TRACTOR_REG_LOG_LEVEL set logging up; $TRACTOR_LOGLEVEL is for
        # tractor programs' roots and must not override the command's choice.
        HONOUR_ENV_LOGLEVEL.set(False)
        try:
            async with open_root_actor(
                name=args.name,
                registry_addrs=listen,
                ensure_registry=True,
                registry_backend=backend,
                secret=secret,
                tls=tls,
                loglevel=None,  # logging is already set up (with the chosen format)
                **kwargs,
            ) as actor:
                addrs = " ".join(str(a) for a in actor.accept_addrs)
                log.info("serving the registry at %s with backend %s", addrs, shown)
                _out(f"READY {addrs} backend={shown}")
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    break
        except OSError as exc:
            where = ", ".join(str(a) for a in listen)
            raise CLIError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    return EXIT_OK


# -- admin commands ------------------------------------------------------------------------


class _Registry:
    """The registrars a client reached; calls go to the first that answers."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor

    async def call(self, func: str, deadline: float | None = None, **kwargs: Any) -> Any:
        errors: list[str] = []
        for reg in self.actor.reg_addrs:
            try:
                return await self.actor.registry_call(reg, func, deadline=deadline, **kwargs)
            except CONNECT_ERRORS as exc:
                errors.append(f"{reg}: {exc}")
        raise RegistryUnavailable("no registrar reachable: " + "; ".join(errors))


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[_Registry]:
    addrs = _registry_addrs(args.registry)
    try:
        secret, tls = _security(args)
        async with open_registry_client(addrs, secret=secret, tls=tls) as actor:
            yield _Registry(actor)
    except RegistryUnavailable as exc:
        raise CLIError(f"{exc} (is `{PROG} serve` running there?)") from exc


def _entry_doc(doc: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "name": doc["name"],
        "uuid": doc["uuid"],
        "addrs": [_addr_text(a) for a in doc["addrs"]],
        "revision": doc["revision"],
        "registered_at": doc["registered_at"],
        "expires_at": doc["expires_at"],
        "registrar": doc.get("registrar", ""),
        "age": round(now - doc["registered_at"], 3),
        "lease_left": round(doc["expires_at"] - now, 3),
    }


def _cmd_ls(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with _client(args) as reg:
            docs: list[dict[str, Any]] = await reg.call("list_entries")
            return docs

    docs = trio.run(run)
    now = time.time()
    if args.name:
        docs = [d for d in docs if d["name"] == args.name]
    entries = sorted((_entry_doc(d, now) for d in docs), key=lambda e: (e["name"], -e["revision"]))
    if args.json:
        _json_out(entries)
        return EXIT_OK
    if not entries:
        _out("no registered actors" + (f" named {args.name!r}" if args.name else ""))
        return EXIT_OK
    rows = [
        (
            e["name"],
            e["uuid"],
            ",".join(e["addrs"]),
            _duration(e["age"]),
            _duration(e["lease_left"]),
            e["registrar"] or "-",
        )
        for e in entries
    ]
    _out(_table(("NAME", "UUID", "ADDRESSES", "AGE", "LEASE", "REGISTRAR"), rows))
    return EXIT_OK


def _ranked(addrs: Sequence[Any]) -> list[str]:
    try:
        return [str(a) for a in prefer_addr(addrs)]
    except ValueError:
        return [_addr_text(a) for a in addrs]


def _cmd_find(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with _client(args) as reg:
            found: list[dict[str, Any]] = await reg.call("find_actors", name=args.name)
            return found

    found = trio.run(run)
    if not found:
        raise CLIError(f"no actor named {args.name!r} is registered")
    actors = [
        {"name": args.name, "uuid": f["uid"][1], "addrs": _ranked(f["addrs"])}
        for f in (found if args.all else found[:1])
    ]
    if args.json:
        _json_out(actors if args.all else actors[0])
    elif args.all:
        for actor in actors:
            _out(f"{actor['uuid']} {' '.join(actor['addrs'])}")
    else:
        for addr in actors[0]["addrs"]:
            _out(addr)
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace) -> int:
    async def run() -> list[str] | None:
        async with _until_signal() as stop, _client(args) as reg:
            deadline = math.inf if args.timeout is None else args.timeout
            with trio.move_on_after(deadline):
                while True:  # long polls: a registrar that stops answering is noticed
                    addrs = await reg.call(
                        "wait_for_actor", deadline=WAIT_POLL + 10.0, name=args.name, poll=WAIT_POLL
                    )
                    if addrs is not None:
                        return _ranked(addrs)
        if stop.signum is not None:
            raise CLIError("interrupted", EXIT_INTERRUPTED)
        return None

    addrs = trio.run(run)
    if addrs is None:
        raise CLIError(
            f"timed out: no actor named {args.name!r} registered within {args.timeout:g}s"
        )
    if args.json:
        _json_out({"name": args.name, "addrs": addrs})
    else:
        for addr in addrs:
            _out(addr)
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    from ._watch import watch

    async def run() -> None:
        async with _until_signal(), _client(args):
            try:
                async for change in watch(args.name, since=args.since):
                    addrs = [_addr_text(a) for a in change.addrs]
                    if args.json:
                        doc = {
                            "revision": change.revision,
                            "kind": change.kind,
                            "name": change.name,
                            "uuid": change.uuid,
                            "addrs": addrs,
                        }
                        _json_out(doc, lines=True)
                    else:
                        _out(
                            f"{change.revision} {change.kind} {change.name} {change.uuid} "
                            + (",".join(addrs) or "-")
                        )
            except ChangesExpired as exc:
                raise CLIError(
                    f"revision {args.since} is older than the history the registrar keeps "
                    f"({exc}); watch without --since, or from a newer revision"
                ) from exc

    trio.run(run)
    return EXIT_OK


def _cmd_rm(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with _client(args) as reg:
            try:
                results: list[dict[str, Any]] = await reg.call(
                    "remove", target=args.target, force=args.force
                )
            except RemoteActorError as exc:
                if exc.type_name.rpartition(".")[2] in ("ActorNotFound", "PermissionDenied"):
                    raise CLIError(_one_line(_registrar_message(exc))) from exc
                raise
            return results

    results = trio.run(run)
    kept = [r for r in results if not r["removed"]]
    if args.json:
        _json_out(results)
    else:
        for r in results:
            if r["removed"]:
                _out(f"removed {r['name']} {r['uuid']} ({r['reason']})")
            else:
                _out(
                    f"kept {r['name']} {r['uuid']}: it answers at its address "
                    "(use --force to remove it anyway)"
                )
    if kept:
        raise CLIError(
            f"{len(kept)} of {len(results)} matching entries kept: their actors are alive"
        )
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with _client(args) as reg:
            doc: dict[str, Any] = await reg.call("stats")
            return doc

    doc = trio.run(run)
    if args.json:
        _json_out(doc)
        return EXIT_OK
    health = "healthy" if doc.get("backend_healthy", True) else "UNHEALTHY"
    pairs = [
        ("registrar", f"{doc['name']} {doc['uuid']} (pid {doc['pid']})"),
        ("addresses", " ".join(doc.get("addrs", [])) or "-"),
        ("uptime", _duration(float(doc["uptime"]))),
        ("backend", f"{doc['backend']} ({health})"),
        ("revision", str(doc["revision"])),
        ("entries", str(doc["entries"])),
        ("lookups", f"{doc['lookups']} ({doc['lookups_per_s']:.2f}/s)"),
        ("registrations", f"{doc['registrations']} ({doc['registrations_per_s']:.2f}/s)"),
        ("waiters", str(doc["waiters"])),
    ]
    _out(_kv(pairs))
    return EXIT_OK


# -- store commands ------------------------------------------------------------------------


def _redis_layout_version() -> int:
    from .backends._redis import SCHEMA_VERSION

    return SCHEMA_VERSION


def _is_redis(backend: RegistryBackend) -> bool:
    return hasattr(backend, "keys") and hasattr(backend, "channel")


def _cmd_migrate(args: argparse.Namespace) -> int:
    url = _backend_url(args.backend)
    shown = redact_url(url)
    scheme = _scheme(url)
    doc: dict[str, Any] = {"backend": shown, "dry_run": args.dry_run}
    if scheme == "sqlite":
        from .backends import migrate_sqlite

        report = trio.run(lambda: migrate_sqlite(url, dry_run=args.dry_run))
        doc.update(
            path=report.path,
            from_version=report.from_version,
            to_version=report.to_version,
            applied=list(report.applied),
        )
        if not report.applied:
            text = (
                f"{report.path}: schema version {report.from_version} is current; "
                "nothing to migrate"
            )
        elif args.dry_run:
            text = (
                f"{report.path}: schema version {report.from_version} -> {report.to_version}; "
                f"would apply: {', '.join(report.applied)}"
            )
        else:
            text = (
                f"{report.path}: migrated schema version {report.from_version} -> "
                f"{report.to_version}; applied: {', '.join(report.applied)}"
            )
    elif scheme == "memory":
        doc.update(applied=[])
        text = "memory:// keeps nothing outside a registrar process; nothing to migrate"
    else:

        async def probe() -> bool:
            async with opened_backend(url) as backend:
                return _is_redis(backend)

        if trio.run(probe):
            version = _redis_layout_version()
            doc.update(from_version=version, to_version=version, applied=[])
            text = f"{shown}: key layout v{version} is current; nothing to migrate"
        else:
            doc.update(applied=[])
            text = f"{shown}: {scheme}:// has no migrations this tool knows of; nothing to migrate"
    if args.json:
        _json_out(doc)
    else:
        _out(text)
    return EXIT_OK


#: Bad rows listed one per line by `check` (all of them are in its --json output).
CHECK_LISTED_ROWS = 20


def _check_sqlite(url: str, doc: dict[str, Any], quick: bool) -> None:
    """Inspect a SQLite registry file without writing to it (``mode=ro``, or ``immutable``
    for a read-only file nobody has open): schema, SQLite's integrity check, every row."""
    from .backends._sqlite import parse_sqlite_url
    from .backends._sqlite_check import damage, open_read_only, scan, schema_problem, tables_of
    from .backends._sqlite_schema import damage_advice, latest_version

    path = os.path.abspath(parse_sqlite_url(url).path)
    doc["path"] = path
    latest = latest_version()
    doc["latest_schema_version"] = latest
    if not os.path.exists(path):
        doc["problems"].append(f"no database at {path}")
        return
    try:
        conn, immutable = open_read_only(path)
    except sqlite3.DatabaseError as exc:
        doc["problems"].append(f"{path} is not a usable SQLite database: {exc}")
        return
    except sqlite3.Error as exc:
        doc["problems"].append(f"cannot open {path}: {exc}")
        return
    try:
        try:
            version, foreign = schema_problem(conn, path)
            tables = tables_of(conn)
        except sqlite3.DatabaseError as exc:
            doc["problems"].append(f"{path} is not a usable SQLite database: {exc}")
            return
        doc["reachable"] = True
        doc["schema_version"] = version
        if immutable:
            doc["warnings"].append(
                "read-only file with no -wal file: read as it is on disk (immutable)"
            )
        if foreign:
            doc["problems"].append(foreign)
            return
        if version == 0:
            doc["warnings"].append("empty database: `serve` or `migrate` creates the schema")
        elif version < latest:
            doc["warnings"].append(
                f"schema version {version} < {latest}: `{PROG} migrate` (or the next serve) "
                "upgrades it"
            )
        found = damage(conn, quick=quick)
        doc["integrity"] = "ok" if not found else "; ".join(found)
        doc["integrity_check"] = "quick_check" if quick else "integrity_check"
        if found:
            doc["problems"].append(
                f"the file is damaged ({doc['integrity_check']}: {doc['integrity']}): "
                f"{damage_advice(path)}"
            )
        try:
            result = scan(conn, tables, time.time())
        except sqlite3.DatabaseError as exc:
            doc["problems"].append(f"reading the rows failed: {exc}")
            return
        doc.update(
            entries=result.live,
            expired=result.expired,
            invalid_rows=len(result.bad),
            bad_rows=[p.doc() for p in result.bad],
        )
        for problem in result.bad[:CHECK_LISTED_ROWS]:
            doc["problems"].append(f"bad row: {problem}")
        if len(result.bad) > CHECK_LISTED_ROWS:
            doc["problems"].append(
                f"... and {len(result.bad) - CHECK_LISTED_ROWS} more bad row(s) (see --json)"
            )
    finally:
        conn.close()


def _repair_sqlite(url: str, quarantine: str | None, as_json: bool) -> dict[str, Any]:
    """``check --repair``: quarantine the bad rows (the check that follows reports the
    file as it is then)."""
    from .backends._sqlite import parse_sqlite_url
    from .backends._sqlite_check import repair

    path = os.path.abspath(parse_sqlite_url(url).path)
    report = repair(path, quarantine)
    summary = {"removed": [p.doc() for p in report.removed], "quarantine": report.quarantine}
    if as_json:
        return summary
    if report.removed:
        _out(
            f"repaired {path}: moved {len(report.removed)} bad row(s) to {report.quarantine} "
            "and deleted them from the database"
        )
        for problem in report.removed:
            _out(f"  removed {problem}")
    else:
        _out(f"repaired {path}: no bad rows; nothing changed")
    return summary


async def _check_backend(url: str, doc: dict[str, Any]) -> None:
    try:
        async with opened_backend(url) as backend:
            doc["reachable"] = True
            doc["entries"] = await backend.count()
            view = getattr(backend, "_view", backend)
            raw_expired = getattr(view, "raw_expired", None)
            if callable(raw_expired):
                doc["expired"] = len(raw_expired(time.time()))
            if isinstance(backend, ReplicatedBackend):
                doc["invalid_rows"] = backend.skipped_rows
                doc["bad_rows"] = [
                    {"kind": b.kind, "table": b.table, "row": b.row, "reason": b.reason}
                    for b in backend.bad_rows
                ]
            healthy = getattr(backend, "healthy", None)  # only backends that can be down
            if healthy is not None:
                doc["healthy"] = bool(healthy)
                if not healthy:
                    doc["problems"].append("the backend reports itself unhealthy")
            if _is_redis(backend):
                doc["schema"] = "key layout"
                doc["schema_version"] = doc["latest_schema_version"] = _redis_layout_version()
    except TractorRegError as exc:
        doc["problems"].append(_describe(exc))


def _cmd_check(args: argparse.Namespace) -> int:
    url = _backend_url(args.backend)
    scheme = _scheme(url)
    if args.repair and scheme != "sqlite":
        raise CLIError(
            f"--repair works on sqlite:// files; {scheme}:// registrars skip bad rows and "
            "`check` lists them",
            EXIT_USAGE,
        )
    doc: dict[str, Any] = {
        "backend": redact_url(url),
        "reachable": False,
        "schema_version": None,
        "latest_schema_version": None,
        "integrity": None,
        "healthy": None,
        "entries": None,
        "expired": None,
        "invalid_rows": None,
        "bad_rows": [],
        "problems": [],
        "warnings": [],
    }
    if scheme == "sqlite":
        if args.repair:
            doc["repair"] = _repair_sqlite(url, args.quarantine, args.json)
        _check_sqlite(url, doc, args.quick)
    else:
        trio.run(_check_backend, url, doc)
        if scheme == "memory":
            doc["warnings"].append("memory:// keeps nothing outside a registrar process")
        for bad in doc["bad_rows"][:CHECK_LISTED_ROWS]:
            doc["problems"].append(f"bad row: {bad['table']} {bad['row']}: {bad['reason']}")
        if doc["invalid_rows"] and doc["invalid_rows"] > min(
            len(doc["bad_rows"]), CHECK_LISTED_ROWS
        ):
            doc["problems"].append(
                f"{doc['invalid_rows']} invalid row(s) in all: registrars skip them (see "
                "--json and their ERROR logs)"
            )
    doc["ok"] = not doc["problems"]
    if args.json:
        _json_out(doc)
    else:
        _out(_kv(_check_lines(doc)))
    if doc["problems"]:
        raise CLIError("check failed: " + "; ".join(doc["problems"]))
    return EXIT_OK


def _check_lines(doc: dict[str, Any]) -> list[tuple[str, str]]:
    def show(value: Any) -> str:
        return "-" if value is None else str(value)

    pairs = [("backend", doc["backend"]), ("reachable", "yes" if doc["reachable"] else "no")]
    if doc["schema_version"] is not None:
        kind = doc.get("schema", "version")
        pairs.append(
            ("schema", f"{kind} {doc['schema_version']} (latest {doc['latest_schema_version']})")
        )
    if doc["integrity"] is not None:
        pairs.append(("integrity", doc["integrity"]))
    if doc["healthy"] is not None:
        pairs.append(("health", "healthy" if doc["healthy"] else "UNHEALTHY"))
    pairs += [
        ("entries", show(doc["entries"])),
        (
            "expired",
            show(doc["expired"]) + (f" (`{PROG} prune` removes them)" if doc["expired"] else ""),
        ),
        ("invalid rows", show(doc["invalid_rows"])),
    ]
    pairs += [("warning", w) for w in doc["warnings"]]
    pairs += [("problem", p) for p in doc["problems"]]
    pairs.append(("status", "OK" if doc["ok"] else "PROBLEMS FOUND"))
    return pairs


def _export_doc(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "uuid": entry.uuid,
        "addrs": [_addr_text(a) for a in entry.addrs],
        "revision": entry.revision,
        "registered_at": entry.registered_at,
        "expires_at": entry.expires_at,
        "registrar": entry.registrar,
    }


def _cmd_export(args: argparse.Namespace) -> int:
    url = _backend_url(args.backend)
    shown = redact_url(url)

    async def read() -> tuple[list[Entry], list[str]]:
        async with opened_backend(url) as backend:
            bad: list[str] = []
            if isinstance(backend, ReplicatedBackend):
                bad = [str(b) for b in backend.bad_rows if b.kind == "entry"]
            return await backend.entries(), bad

    entries, bad = trio.run(read)
    to_stdout = args.output == "-"
    try:
        stream: TextIO = sys.stdout if to_stdout else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    progress = _Progress("exporting", len(entries))
    try:
        for entry in entries:
            stream.write(json.dumps(_export_doc(entry)) + "\n")
            progress.advance()
        stream.flush()
    finally:
        progress.close()
        if not to_stdout:
            stream.close()
    for row in bad:
        print(f"{PROG}: skipped invalid row {row}", file=sys.stderr)
    if not to_stdout:
        summary = {
            "exported": len(entries),
            "skipped_rows": len(bad),
            "backend": shown,
            "file": args.output,
        }
        if args.json:
            _json_out(summary)
        else:
            text = f"exported {len(entries)} entries from {shown} to {args.output}"
            if bad:
                text += f"; skipped {len(bad)} invalid row(s)"
            _out(text)
    if bad and not args.skip_bad:
        raise CLIError(
            f"exported {len(entries)} entries; skipped {len(bad)} invalid row(s) that cannot "
            f"be decoded (listed above; `{PROG} check` shows them, `check --repair` removes "
            "them, --skip-bad makes this exit 0)"
        )
    return EXIT_OK


@dataclass(frozen=True)
class _Record:
    line: int
    name: str
    uuid: str
    addrs: tuple[AddrTuple, ...]
    expires_at: float
    registrar: str


def _number(doc: dict[str, Any], key: str, required: bool) -> float | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise ValueError(f"{key!r} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def _parse_record(lineno: int, text: str) -> _Record:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    for key in ("name", "uuid"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f"{key!r} must be a non-empty string, got {doc.get(key)!r}")
    raw_addrs = doc.get("addrs")
    if not isinstance(raw_addrs, list) or not raw_addrs:
        raise ValueError(f"'addrs' must be a non-empty list, got {raw_addrs!r}")
    addrs: list[AddrTuple] = []
    for raw in raw_addrs:
        try:
            addrs.append(unwrap_address(coerce_address(raw)))
        except ValueError as exc:
            raise ValueError(f"bad address {raw!r}: {exc}") from None
    expires_at = _number(doc, "expires_at", required=True)
    assert expires_at is not None
    _number(doc, "registered_at", required=False)
    revision = doc.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise ValueError(f"'revision' must be an integer, got {revision!r}")
    registrar = doc.get("registrar", "")
    if not isinstance(registrar, str):
        raise ValueError(f"'registrar' must be a string, got {registrar!r}")
    return _Record(lineno, doc["name"], doc["uuid"], tuple(addrs), expires_at, registrar)


def _read_records(path: str) -> tuple[list[_Record], list[tuple[int, str]]]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CLIError(f"cannot read {path}: {reason}") from exc
    good: list[_Record] = []
    bad: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _parse_record(lineno, line)
        except ValueError as exc:
            bad.append((lineno, str(exc)))
            continue
        uid = (record.name, record.uuid)
        if uid in seen:
            bad.append((lineno, f"duplicate of line {seen[uid]} ({record.name} {record.uuid})"))
            continue
        seen[uid] = lineno
        good.append(record)
    return good, bad


def _batches(records: list[_Record]) -> list[list[_Record]]:
    """Consecutive groups with at most one record per name, so that registering a group
    concurrently keeps the file order between entries of the same name."""
    groups: list[list[_Record]] = []
    current: list[_Record] = []
    names: set[str] = set()
    for record in records:
        if record.name in names or len(current) >= IMPORT_BATCH:
            groups.append(current)
            current, names = [], set()
        current.append(record)
        names.add(record.name)
    if current:
        groups.append(current)
    return groups


async def _import(url: str, records: list[_Record], progress: _Progress) -> tuple[int, int]:
    imported = expired = 0
    failures: list[TractorRegError] = []
    async with opened_backend(url) as backend:
        for group in _batches(records):
            async with trio.open_nursery() as nursery:

                async def put(record: _Record) -> None:
                    nonlocal imported, expired
                    ttl = record.expires_at - time.time()
                    if ttl <= 0:
                        expired += 1
                    else:
                        try:
                            await backend.register(
                                (record.name, record.uuid),
                                list(record.addrs),
                                ttl,
                                registrar=record.registrar,
                            )
                        except TractorRegError as exc:
                            failures.append(exc)
                            nursery.cancel_scope.cancel()
                            return
                        imported += 1
                    progress.advance()

                for record in group:
                    nursery.start_soon(put, record)
            if failures:
                raise CLIError(
                    f"import stopped after {imported} of {len(records)} entries: "
                    f"{_describe(failures[0])}"
                )
    return imported, expired


def _cmd_import(args: argparse.Namespace) -> int:
    url = _backend_url(args.backend)
    shown = redact_url(url)
    records, bad = _read_records(args.file)
    where = "<stdin>" if args.file == "-" else args.file
    for lineno, reason in bad:
        verb = "skipped" if args.skip_bad else "bad line"
        print(f"{PROG}: {where}:{lineno}: {verb}: {reason}", file=sys.stderr)
    if bad and not args.skip_bad:
        numbers = ", ".join(str(n) for n, _ in bad)
        raise CLIError(
            f"{len(bad)} bad line(s) in {where} (line {numbers}); nothing imported "
            "(fix them, or pass --skip-bad to import the good lines)"
        )
    progress = _Progress("importing", len(records))
    try:
        imported, expired = trio.run(_import, url, records, progress)
    finally:
        progress.close()
    summary = {
        "backend": shown,
        "file": where,
        "imported": imported,
        "expired": expired,
        "bad_lines": [n for n, _ in bad],
    }
    if args.json:
        _json_out(summary)
    else:
        text = f"imported {imported} entries into {shown}; skipped {expired} expired"
        if bad:
            text += f" and {len(bad)} bad line(s)"
        if _scheme(url) == "memory":
            text += " (memory:// keeps nothing after this command exits)"
        _out(text)
    return EXIT_OK


def _cmd_prune(args: argparse.Namespace) -> int:
    url = _backend_url(args.backend)

    async def run() -> list[Entry]:
        async with opened_backend(url) as backend:
            return await backend.purge_expired()

    purged = trio.run(run)
    if args.json:
        _json_out(
            {
                "backend": redact_url(url),
                "pruned": len(purged),
                "entries": [{"name": e.name, "uuid": e.uuid} for e in purged],
            }
        )
    else:
        _out(f"pruned {len(purged)} expired entries from {redact_url(url)}")
    return EXIT_OK


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tractor-reg`` console script; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        owner: argparse.ArgumentParser = getattr(args, "subparser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = False
    try:
        level = _log_level(args)
        debug = level_value(level) <= logging.DEBUG
        setup_logging(level, getattr(args, "log_format", None) or "text")
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): say nothing more on a closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - every failure becomes one error line
        leaf = _leaf(exc)
        if isinstance(leaf, BrokenPipeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILURE
        if isinstance(leaf, KeyboardInterrupt):
            print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"{PROG}: error: {_describe(leaf)}", file=sys.stderr)
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        return _exit_code(leaf)
