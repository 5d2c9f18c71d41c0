"""A registrar grants no lease longer than ``RegistryLimits.max_lease_ttl`` (``tractor-reg
serve --max-lease-ttl``): a longer ask is granted the cap, ``register_actor`` answers the
lease it granted, and an actor renews often enough for the lease it got."""

from __future__ import annotations

import math
import time
import uuid as uuidlib
from typing import Any

import pytest
import trio

import tractor_reg
from tests.procs import always, joiner_argv, reader, registrar_argv, spawn, wait_ready
from tests.rpc_targets.hostile import client
from tests.test_cli import cli, failed

#: Slack for the clocks of the test and the registrar process (same host).
SLACK = 2.0


def by_uuid(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["uuid"]: e for e in entries}


@pytest.mark.parametrize("cap", [None, 120.0], ids=["default-cap", "flag"])
async def test_a_hostile_lease_ask_is_capped_and_nothing_else_changes(
    cap: float | None, reg_addr: tractor_reg.TCPAddress
) -> None:
    extra = [] if cap is None else ["--max-lease-ttl", str(cap)]
    granted = 3600.0 if cap is None else cap
    with spawn(registrar_argv(str(reg_addr), extra=extra)) as registrar:
        wait_ready(registrar)
        with trio.fail_after(30):
            victim, hog = str(uuidlib.uuid4()), str(uuidlib.uuid4())
            async with (
                client(reg_addr, "victim", victim) as good,
                client(reg_addr, "hog", hog) as bad,
                reader(reg_addr, "cap") as look,
            ):
                await good.reg(
                    "register_actor", uid=["victim", victim], addr=[["127.0.0.1", 9]], ttl=20
                )
                before = by_uuid(await look.reg("list_entries"))
                reply = await bad.reg(
                    "register_actor", uid=["hog", hog], addr=[["127.0.0.1", 10]], ttl=1e9
                )
                assert reply["ttl"] == granted, reply
                assert await bad.reg("renew_lease", uid=["hog", hog], ttl=1e9) is True
                after = by_uuid(await look.reg("list_entries"))
                assert after[hog]["expires_at"] <= time.time() + granted + SLACK, after[hog]
                assert after[hog]["expires_at"] >= time.time() + granted - SLACK, after[hog]
                # everything that was stored before is exactly as it was
                del after[hog]
                assert after == before


async def test_an_actor_asking_more_than_the_cap_renews_within_the_granted_lease(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """Asked 6 s (renewing every 2 s), granted 1 s: the actor learns it from the reply
    and renews every 1/3 s, so its entry never lapses."""
    cap = 1.0
    registrar_cmd = registrar_argv(str(reg_addr), extra=["--max-lease-ttl", str(cap)])
    with spawn(registrar_cmd) as registrar:
        wait_ready(registrar)
        with spawn(joiner_argv("greedy", str(reg_addr), ttl=6.0)) as joiner:
            uuid = joiner.wait_line("READY", timeout=15).split()[1]

            async def lease_left() -> float | None:
                async with reader(reg_addr, "greedy") as look:
                    entry = by_uuid(await look.reg("list_entries")).get(uuid)
                return None if entry is None else float(entry["expires_at"]) - time.time()

            with trio.fail_after(30):
                seen = await always(
                    "the greedy actor stays registered on a lease no longer than the cap",
                    lease_left,
                    lambda left: left is not None and 0 < left <= cap + SLACK,
                    4 * 2.0,  # four of the renew periods it asked for
                    registrar,
                    joiner,
                )
            assert seen > 10


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "60"])
def test_registry_limits_refuse_a_bad_max_lease_ttl(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_lease_ttl must be a positive number of seconds"):
        tractor_reg.RegistryLimits(max_lease_ttl=bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-lease-ttl", "0"], "must be a positive number of seconds"),
        (["--max-lease-ttl", "inf"], "must be a positive number of seconds"),
        (["--max-lease-ttl", "1h"], "not a number"),
        (["--lease-ttl", "100", "--max-lease-ttl", "50"], "longer than the longest lease"),
    ],
)
def test_serve_refuses_a_bad_max_lease_ttl(
    args: list[str], message: str, reg_addr: tractor_reg.TCPAddress
) -> None:
    result = cli("serve", "--listen", str(reg_addr), "--backend", "memory://", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    if "longer than" in message:
        assert "--max-lease-ttl 50" in failed(result, 2)
