"""A registration is owned by whoever proved it: the holder of its lease token.

Real processes throughout: the registrar is ``tractor-reg serve``, the victim a joiner
actor (:mod:`tests.rpc_targets.joiner`) that renews every 0.3 s, the attacker
:mod:`tests.rpc_targets.usurper`, which says hello *as the victim* and, with or without
the shared secret, tries to unregister it, renew it, add its own address to its entry and
take its uid over. Before ownership, the uid declared in a handshake was all a registrar
checked, so every one of those attempts succeeded.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import tractor_reg
from tests.procs import (
    Proc,
    await_joiner,
    eventually,
    joiner_argv,
    python,
    registrar_argv,
    spawn,
    wait_ready,
)
from tests.rpc_targets.hostile import client

pytestmark = pytest.mark.timeout(60)

CLI = python("-m", "tractor_reg")
SECRET = b"identity tests' shared secret, 32+ bytes"
#: The victim's lease and renew interval: it renews several times a second.
VICTIM_TTL, VICTIM_RENEW = 3.0, 0.3


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture(params=["with-secret", "without-secret"])
def secret(request: pytest.FixtureRequest, secret_file: Path) -> Path | None:
    return secret_file if request.param == "with-secret" else None


def _secret_args(secret: Path | None) -> list[str]:
    return [] if secret is None else ["--secret-file", str(secret)]


def _secret_env(secret: Path | None) -> dict[str, str]:
    return {} if secret is None else {"TRACTOR_REG_SECRET_FILE": str(secret)}


def _secret_bytes(secret: Path | None) -> bytes | None:
    return None if secret is None else secret.read_bytes()


async def entries(reg: tractor_reg.Address, secret: Path | None) -> list[dict[str, Any]]:
    async with client(reg, "reader", f"reader-{os.getpid()}", secret=_secret_bytes(secret)) as p:
        found: list[dict[str, Any]] = await p.reg("list_entries")
        return found


async def entry_of(
    reg: tractor_reg.Address, uuid: str, secret: Path | None
) -> dict[str, Any] | None:
    return next((e for e in await entries(reg, secret) if e["uuid"] == uuid), None)


def fixed(entry: dict[str, Any] | None) -> tuple[Any, ...]:
    """What no one but the owner may change (its lease moves with its own renewals)."""
    assert entry is not None, "the victim's entry is gone"
    return (entry["name"], entry["uuid"], entry["addrs"], entry["revision"], entry["registered_at"])


def usurp(reg: tractor_reg.Address, uuid: str, secret: Path | None) -> list[dict[str, Any]]:
    """Run the usurper against the victim ``("victim", uuid)``: its outcomes, in order."""
    argv = python("-m", "tests.rpc_targets.usurper", str(reg), "victim", uuid, "--own-port", "9")
    if secret is not None:
        argv += ["--secret-file", str(secret)]
    with spawn(argv) as proc:
        assert proc.popen.wait(30) == 0, proc.stderr_tail()
        proc.wait_line("DONE", timeout=5)
        return [json.loads(line) for line in proc.lines if line.startswith("{")]


async def assert_usurper_refused(
    reg: tractor_reg.Address, uuid: str, secret: Path | None, before: dict[str, Any]
) -> None:
    outcomes = await trio.to_thread.run_sync(usurp, reg, uuid, secret)
    wrong = [
        o
        for o in outcomes
        if o["outcome"] != EXPECTED.get(o["op"], "PermissionDenied")
        or (
            o["outcome"] == "PermissionDenied"
            and "lease token presented does not match" not in o["message"]
        )
    ]
    after = await entry_of(reg, uuid, secret)
    assert not wrong, f"not refused as expected: {wrong}; entry now {after}"
    assert len(outcomes) == 8, outcomes
    assert fixed(after) == fixed(before)


#: Attempts without a token lack a required argument; every other one is refused.
EXPECTED = {"unregister-no-token": "TypeError", "renew-no-token": "TypeError"}


@pytest.fixture
def registrar_proc(reg_addr: tractor_reg.TCPAddress, secret: Path | None) -> Iterator[Proc]:
    with spawn(registrar_argv(str(reg_addr), extra=_secret_args(secret))) as proc:
        wait_ready(proc)
        yield proc


async def test_a_peer_cannot_act_on_another_actors_registration(
    reg_addr: tractor_reg.TCPAddress, secret: Path | None, registrar_proc: Proc
) -> None:
    """Unregister, renew, add an address, take over the uid: all refused, with the secret
    or without, before and after the victim renews; the victim's entry is unchanged."""
    joiner = joiner_argv("victim", str(reg_addr), ttl=VICTIM_TTL, renew=VICTIM_RENEW)
    with spawn(joiner, env=_secret_env(secret)) as victim:
        uuid, addrs = await await_joiner(victim)
        with trio.fail_after(40):
            before = await entry_of(reg_addr, uuid, secret)
            assert before is not None and before["addrs"] == addrs
            await assert_usurper_refused(reg_addr, uuid, secret, before)

            # ... and again once the victim renewed its lease (it still owns the entry).
            last = await entry_of(reg_addr, uuid, secret)
            assert last is not None
            await eventually(
                "the victim renews its lease",
                lambda: entry_of(reg_addr, uuid, secret),
                lambda e: e is not None and e["expires_at"] > last["expires_at"],
                10,
                victim,
                registrar_proc,
            )
            await assert_usurper_refused(reg_addr, uuid, secret, before)
            # Lookups still answer the victim's own address only.
            async with client(reg_addr, "asker", secret=_secret_bytes(secret)) as asker:
                assert await asker.reg("find_actor", name="victim") == addrs


async def test_the_owner_acts_over_any_fresh_connection(
    reg_addr: tractor_reg.TCPAddress, secret: Path | None, registrar_proc: Proc
) -> None:
    """The token, not the connection or the declared uid, is the proof: the owner renews,
    adds an address, unregisters over new connections under other names."""
    uid = ["owned", "owned-uuid"]
    key = _secret_bytes(secret)
    with trio.fail_after(20):
        async with client(reg_addr, "owned", "owned-uuid", secret=key) as first:
            answer = await first.call(
                "self", "register_actor", uid=uid, addr=[["127.0.0.1", 9]], ttl=30.0
            )
            assert isinstance(answer, tractor_reg._msg.Return), answer
            token = answer.value["token"]
            assert isinstance(token, bytes) and len(token) == 32
        # Someone else's connection, someone else's declared uid: the token decides.
        async with client(reg_addr, "somebody", "somebody-else", secret=key) as second:
            assert await second.reg("renew_lease", uid=uid, token=token, ttl=60.0) is True
            changed = await second.reg(
                "register_actor", uid=uid, addr=[["127.0.0.1", 10]], token=token
            )
            assert changed["token"] == token
        entry = await entry_of(reg_addr, "owned-uuid", secret)
        assert entry is not None and entry["addrs"] == [["127.0.0.1", 9], ["127.0.0.1", 10]]
        assert "owner" not in entry and "token" not in entry  # never shown to peers
        async with client(reg_addr, "third", "third-uuid", secret=key) as third:
            assert await third.reg("unregister_actor", uid=uid, token=token) is True
            assert await third.reg("find_actor", name="owned") is None
            # The uid is free again: the next registration claims it with a new token.
            again = await third.reg("register_actor", uid=uid, addr=[["127.0.0.1", 9]])
            assert again["token"] != token
            with pytest.raises(AssertionError, match="PermissionDenied"):
                await third.reg("renew_lease", uid=uid, token=token)


async def test_an_actor_heals_after_its_in_memory_registrar_restarts(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    """The registrar restarts empty; the actor's next renewal finds it unknown and it
    registers again with its token (a fresh claim), which then still protects it."""
    joiner = joiner_argv("victim", str(reg_addr), ttl=VICTIM_TTL, renew=VICTIM_RENEW)
    with spawn(registrar_argv(str(reg_addr))) as first:
        wait_ready(first)
        with spawn(joiner) as victim:
            uuid, addrs = await await_joiner(victim)
            os.killpg(first.pid, signal.SIGKILL)
            first.popen.wait()
            with spawn(registrar_argv(str(reg_addr))) as second:
                wait_ready(second)
                with trio.fail_after(30):
                    healed = await eventually(
                        "the actor registers again at the restarted registrar",
                        lambda: entry_of(reg_addr, uuid, None),
                        lambda e: e is not None,
                        10,
                        victim,
                        second,
                    )
                    assert healed is not None and healed["addrs"] == addrs
                    await assert_usurper_refused(reg_addr, uuid, None, healed)


# -- forced removal ----------------------------------------------------------------------------


async def test_forced_removal_needs_the_unix_socket_or_the_secret(
    reg_addr: tractor_reg.TCPAddress, uds_dir: str, secret_file: Path
) -> None:
    """Without a secret a forced removal is refused over TCP (anyone on the host could
    ask) and allowed over the registrar's owner-only Unix socket; with a secret, any
    authenticated peer may. A verified removal (without force) stays open to all."""
    uds = tractor_reg.UDSAddress(uds_dir, "reg.sock")
    with spawn(registrar_argv(str(reg_addr), f"uds://{uds.path}")) as reg:
        wait_ready(reg)
        with spawn(joiner_argv("live", str(reg_addr))) as live:
            uuid, _ = await await_joiner(live)
            with trio.fail_after(20):
                before = await entry_of(reg_addr, uuid, None)
                async with client(reg_addr, "operator") as tcp:
                    reply = await tcp.call("self", "remove", target=uuid, force=True)
                    assert isinstance(reply, tractor_reg._msg.Error), reply
                    assert reply.type_name == "PermissionDenied"
                    assert "Unix socket" in reply.message and "secret" in reply.message
                    assert await entry_of(reg_addr, uuid, None) == before
                    # without force: verified (it answers), kept
                    kept = await tcp.reg("remove", target=uuid)
                    assert [r["removed"] for r in kept] == [False]
                async with client(uds, "operator") as local:
                    removed = await local.reg("remove", target=uuid, force=True)
                    assert removed == [
                        {"name": "live", "uuid": uuid, "removed": True, "reason": "forced"}
                    ]
                assert await entry_of(reg_addr, uuid, None) is None
        # The CLI says so too.
        refused = await trio.run_process(
            [*CLI, "rm", "live", "--force", "--registry", str(reg_addr)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert refused.returncode != 0
        assert b"forced removal needs the registrar's Unix socket" in refused.stderr

    env = {"TRACTOR_REG_SECRET_FILE": str(secret_file)}
    with spawn(registrar_argv(str(reg_addr), extra=["--secret-file", str(secret_file)])) as reg:
        wait_ready(reg)
        with spawn(joiner_argv("live", str(reg_addr)), env=env) as live:
            uuid, _ = await await_joiner(live)
            with trio.fail_after(20):
                async with client(reg_addr, "operator", secret=SECRET) as tcp:
                    removed = await tcp.reg("remove", target=uuid, force=True)
                    assert [r["removed"] for r in removed] == [True]
