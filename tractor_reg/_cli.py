"""The ``tractor-reg`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import trio

from ._addr import Address, parse_address
from ._exceptions import TractorRegError
from ._log import check_level
from ._root import DEFAULT_BACKEND_URL, ENV_BACKEND, ENV_REGISTRY_ADDRS, open_root_actor

__all__ = ["main"]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tractor-reg",
        description="Run and operate a tractor_reg registrar.",
        epilog=f"Environment: {ENV_BACKEND} (backend URL), {ENV_REGISTRY_ADDRS} "
        "(comma-separated tcp://HOST:PORT / uds:///PATH addresses).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tractor-reg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run a standalone registrar",
        description="Run a standalone, long-lived registrar until SIGINT/SIGTERM.",
    )
    serve.add_argument(
        "--backend",
        default=None,
        help=f"registry backend URL (default: ${ENV_BACKEND}, else {DEFAULT_BACKEND_URL})",
    )
    serve.add_argument(
        "--listen",
        action="append",
        type=_addr_arg,
        default=None,
        metavar="ADDR",
        help="address to serve on, tcp://HOST:PORT or uds:///PATH (repeatable; "
        f"default: ${ENV_REGISTRY_ADDRS}, else tcp://127.0.0.1:1616)",
    )
    serve.add_argument("--name", default="registrar", help="actor name (default: registrar)")
    serve.add_argument("--log-level", type=_level_arg, default="info", metavar="LEVEL")
    serve.add_argument(
        "--lease-ttl", type=float, default=None, help="default lease of a registration (s)"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    listen: list[Address] | None = args.listen
    backend = args.backend or os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND_URL
    kwargs = {} if args.lease_ttl is None else {"lease_ttl": args.lease_ttl}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_root_actor(
            name=args.name,
            registry_addrs=listen,
            ensure_registry=True,
            registry_backend=backend,
            loglevel=args.log_level,
            **kwargs,
        ) as actor:
            addrs = " ".join(str(a) for a in actor.accept_addrs)
            print(f"READY {addrs} backend={backend}", flush=True)
            async for _ in signals:
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        try:
            trio.run(_serve, args)
        except TractorRegError as exc:
            print(f"tractor-reg: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"tractor-reg: error: {exc}", file=sys.stderr)
            return 1
        return 0
    return 2  # pragma: no cover - argparse enforces the choices
