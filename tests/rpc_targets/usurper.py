"""A hostile peer that holds the shared secret and tries to take over another actor's
registration: it says hello *as the victim* (name and uuid), then tries to unregister
it, renew it, add its own address to the entry and register the uid afresh, with no
token and with a forged one. Prints one JSON line per attempt, ``{"op", "outcome"}``
(``outcome``: the error's type name, or ``"ok"`` and the value), then ``DONE``.
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

import trio

import tractor_reg
from tests.rpc_targets.hostile import client
from tractor_reg._msg import Return

FORGED = secrets.token_bytes(32)


def attempts(uid: list[str], mine: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, endpoint, kwargs) of every attempt on ``uid``; ``mine``: our own address."""
    return [
        # no token at all
        ("unregister-no-token", "unregister_actor", {"uid": uid}),
        ("renew-no-token", "renew_lease", {"uid": uid, "ttl": 3600.0}),
        ("unregister", "unregister_actor", {"uid": uid, "token": FORGED}),
        ("renew", "renew_lease", {"uid": uid, "token": FORGED, "ttl": 3600.0}),
        ("add-address", "register_actor", {"uid": uid, "addr": [mine]}),
        ("add-address-forged", "register_actor", {"uid": uid, "addr": [mine], "token": FORGED}),
        ("take-over", "register_actor", {"uid": uid, "addr": [mine], "ttl": 3600.0}),
        (
            "take-over-forged",
            "register_actor",
            {"uid": uid, "addr": [mine], "ttl": 3600.0, "token": FORGED},
        ),
    ]


async def main(args: argparse.Namespace) -> None:
    secret = None
    if args.secret_file is not None:
        with open(args.secret_file, "rb") as fh:
            secret = fh.read().strip()
    uid = [args.name, args.uuid]
    mine = ["127.0.0.1", args.own_port]
    # Hello as the victim: a uid declared in a handshake must prove nothing.
    async with client(args.registry, args.name, args.uuid, secret=secret) as peer:
        for label, func, kwargs in attempts(uid, mine):
            reply = await peer.call("self", func, **kwargs)
            if isinstance(reply, Return):
                outcome: dict[str, Any] = {"op": label, "outcome": "ok", "value": repr(reply.value)}
            else:
                outcome = {"op": label, "outcome": reply.type_name, "message": reply.message}
            print(json.dumps(outcome), flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("registry", type=tractor_reg.parse_address)
    parser.add_argument("name")
    parser.add_argument("uuid")
    parser.add_argument("--secret-file", default=None)
    parser.add_argument("--own-port", type=int, required=True)
    trio.run(main, parser.parse_args())
