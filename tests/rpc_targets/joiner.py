"""A root actor that joins a registry, prints READY and its addresses, and serves."""

from __future__ import annotations

import argparse

import trio

import tractor_reg


async def main(args: argparse.Namespace) -> None:
    kwargs = {"lease_ttl": args.ttl}
    if args.renew is not None:
        kwargs["renew_interval"] = args.renew
    async with tractor_reg.open_root_actor(
        name=args.name,
        registry_addrs=args.registry,
        enable_modules=["tests.rpc_targets.funcs"],
        enable_transports=args.transport,
        **kwargs,
    ) as actor:
        if args.print_token:
            # For tests that re-register this actor's uid as its owner would.
            print("TOKEN", actor._lease_token.hex(), flush=True)
        print("READY", actor.uuid, " ".join(str(a) for a in actor.accept_addrs), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--registry", action="append", type=tractor_reg.parse_address)
    parser.add_argument("--transport", action="append", default=None)
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--renew", type=float, default=None)
    parser.add_argument("--print-token", action="store_true")
    trio.run(main, parser.parse_args())
