"""Authentication (shared secret), TLS for TCP, limits, and the exposed-registrar warning."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import trio
import trio.testing

import tractor_reg
from tests.conftest import free_port
from tests.rpc_targets import funcs
from tests.rpc_targets.hostile import client, hello, raw_peer
from tests.tls_certs import have_openssl, make_certs
from tractor_reg._msg import Error, Handshake, Return

SECRET = b"correct horse battery staple 42"
FUNCS = "tests.rpc_targets.funcs"


# -- shared secret ------------------------------------------------------------------------


async def test_tree_with_a_secret_works_end_to_end(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr], secret=SECRET) as an:
            # children get the secret from their parent (over stdin) and authenticate
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            seeker = await an.start_actor("seeker", enable_modules=[FUNCS])
            assert await seeker.run(funcs.find_and_call, name="svc", value=5) == 5
            assert await portal.run(funcs.add, a=1, b=2) == 3


async def test_peer_without_or_with_a_wrong_secret_is_refused(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], secret=SECRET):
            async with tractor_reg.get_registry() as local:
                before = await local.run_from_ns("self", "get_registry")
            # a raw peer that just says hello gets nothing: not even a read
            async with raw_peer(reg_addr) as peer:
                theirs = await peer.recv_handshake()
                assert theirs.auth and len(theirs.nonce) >= 32
                await peer.send(hello("mallory", "m-1"))
                refusal = await peer.recv()  # told why, then dropped
                assert isinstance(refusal, Error) and refusal.type_name == "AuthenticationError"
                await peer.expect_closed()
            # a whole actor without the secret, or with another one, cannot join
            for secret in (None, b"another secret of sufficient length"):
                async with trio.open_nursery() as nursery:

                    async def join(secret: bytes | None = secret) -> None:
                        with pytest.raises(RuntimeError, match="refused this actor"):
                            await trio.to_thread.run_sync(_join_in_thread, reg_addr, secret)

                    nursery.start_soon(join)
            async with tractor_reg.get_registry() as local:
                assert await local.run_from_ns("self", "get_registry") == before


def _join_in_thread(reg_addr: tractor_reg.TCPAddress, secret: bytes | None) -> None:
    """A second root must live in another trio run (one root per run); use a thread."""

    async def main() -> None:
        async with tractor_reg.open_root_actor(
            registry_addrs=[reg_addr], secret=secret, name="intruder"
        ):
            pass

    # The runtime's "current actor" is process-wide, so fake a separate process by
    # clearing and restoring it around the nested run.
    from tractor_reg import _state

    saved = _state.maybe_current_actor()
    _state._set_current_actor(None)
    try:
        trio.run(main)
    finally:
        _state._set_current_actor(saved)


async def test_the_secret_never_crosses_the_wire(reg_addr: tractor_reg.TCPAddress) -> None:
    """Everything a client sends and receives, recorded by a relay in between."""
    relay_port = free_port()
    seen = bytearray()

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while data := await src.receive_some(65536):
                seen.extend(data)
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def relay(stream: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(*reg_addr)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, stream, upstream)
                nursery.start_soon(pump, upstream, stream)
        finally:
            await upstream.aclose()
            await stream.aclose()

    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], secret=SECRET):
            async with trio.open_nursery() as nursery:
                listeners = await trio.open_tcp_listeners(relay_port, host="127.0.0.1")
                nursery.start_soon(trio.serve_listeners, relay, listeners)
                async with client_over(("127.0.0.1", relay_port)) as answer:
                    assert answer is None or isinstance(answer, list)
                nursery.cancel_scope.cancel()
    assert seen, "the relay saw no traffic"
    assert SECRET not in bytes(seen)


class client_over:
    """Authenticate through ``addr`` with the right secret and look something up."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = tractor_reg.TCPAddress(*addr)

    async def __aenter__(self) -> object:
        from tractor_reg._ipc import Channel
        from tractor_reg._msg import Call, Handshake

        stream = await trio.open_tcp_stream(*self.addr)
        self.chan = Channel(stream)
        await self.chan.handshake(
            Handshake(
                name="c", uuid="c-1", pid=1, is_registrar=False, nonce=os.urandom(32), auth=True
            ),
            5.0,
            SECRET,
        )
        await self.chan.send(Call(cid=1, ns="self", func="find_actor", kwargs={"name": "x"}))
        reply = await self.chan.recv()
        assert isinstance(reply, Return), reply
        return reply.value

    async def __aexit__(self, *exc: object) -> None:
        await self.chan.aclose()


def test_secret_from_a_file_and_too_short(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tractor_reg._security import Security, load_secret

    path = os.path.join(str(tmp_path), "secret")
    with open(path, "wb") as fh:
        fh.write(SECRET + b"\n")
    assert load_secret(path) == SECRET
    monkeypatch.setenv("TRACTOR_REG_SECRET_FILE", path)
    assert Security.resolve().secret == SECRET
    with pytest.raises(tractor_reg.SecurityConfigError, match="at least 16"):
        load_secret(b"short")
    with pytest.raises(tractor_reg.SecurityConfigError, match="cannot read"):
        load_secret(os.path.join(str(tmp_path), "missing"))


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs() -> Iterator[dict[str, str]]:
    if not have_openssl():
        pytest.skip("needs the openssl command")
    d = tempfile.mkdtemp(prefix="tr-certs-")
    try:
        yield make_certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def test_tls_tree_works_and_plain_or_untrusting_peers_are_refused(
    reg_addr: tractor_reg.TCPAddress, certs: dict[str, str]
) -> None:
    tls = tractor_reg.TLSConfig(cert=certs["cert"], key=certs["key"], ca=certs["ca"])
    with trio.fail_after(40):
        async with tractor_reg.open_nursery(registry_addrs=[reg_addr], tls=tls) as an:
            portal = await an.start_actor("svc", enable_modules=[FUNCS])
            seeker = await an.start_actor("seeker", enable_modules=[FUNCS])
            assert await seeker.run(funcs.find_and_call, name="svc", value=9) == 9
            assert await portal.run(funcs.add, a=2, b=2) == 4
            # plain TCP to a TLS registrar: no answer it can use
            async with raw_peer(reg_addr) as peer:
                await peer.send(hello("plain", "p-1"))
                with pytest.raises((tractor_reg.ProtocolError, tractor_reg.TransportClosed)):
                    await peer.recv()
            # a client that does not trust the registrar's CA refuses it
            untrusting = tractor_reg.TLSConfig(ca=certs["other_ca"])
            with pytest.raises(RuntimeError):
                await trio.to_thread.run_sync(_client_in_thread, reg_addr, untrusting)


async def test_tls_actor_shuts_down_despite_silent_diallers(
    reg_addr: tractor_reg.TCPAddress, certs: dict[str, str]
) -> None:
    """TCP diallers that never start TLS, one admitted and two refused at the connection
    limit, cannot hold a TLS actor's shutdown: closing their channels is bounded."""
    tls = tractor_reg.TLSConfig(cert=certs["cert"], key=certs["key"], ca=certs["ca"])
    held: list[trio.SocketStream] = []
    try:
        with trio.fail_after(15):
            async with tractor_reg.open_root_actor(
                registry_addrs=[reg_addr], tls=tls, max_connections=1
            ):
                for _ in range(3):
                    held.append(await trio.open_tcp_stream(reg_addr.host, reg_addr.port))
                await trio.testing.wait_all_tasks_blocked()
            # the refused and the admitted silent diallers saw their connections closed
            for stream in held:
                with pytest.raises(trio.BrokenResourceError):
                    while await stream.receive_some(4096):
                        pass
                    raise trio.BrokenResourceError  # EOF counts as closed too
    finally:
        for stream in held:
            await stream.aclose()


@pytest.mark.parametrize("rude", [b"", b"GET / HTTP/1.0\r\n\r\n"], ids=["hangs-up", "garbage"])
async def test_tls_refusal_survives_a_dialler_that_hangs_up_or_speaks_garbage(
    reg_addr: tractor_reg.TCPAddress, certs: dict[str, str], rude: bytes
) -> None:
    """A TLS actor at its connection limit refuses a dialler by closing the connection,
    without a TLS handshake: a refused dialler that hangs up or sends plain text cannot
    take the actor down."""
    tls = tractor_reg.TLSConfig(cert=certs["cert"], key=certs["key"], ca=certs["ca"])
    held: list[trio.SocketStream] = []
    try:
        with trio.fail_after(20):
            async with tractor_reg.open_root_actor(
                registry_addrs=[reg_addr], tls=tls, max_connections=1
            ):
                held.append(await trio.open_tcp_stream(reg_addr.host, reg_addr.port))
                await trio.testing.wait_all_tasks_blocked()  # the silent one holds the slot
                refused = await trio.open_tcp_stream(reg_addr.host, reg_addr.port)
                if rude:
                    await refused.send_all(rude)
                else:
                    await refused.send_eof()
                # the actor closes the refused connection at once (EOF or a reset)
                with contextlib.suppress(trio.BrokenResourceError):
                    while await refused.receive_some(4096):
                        pass
                await refused.aclose()
                await trio.testing.wait_all_tasks_blocked()
                assert tractor_reg.current_actor() is not None  # still running
    finally:
        for stream in held:
            await stream.aclose()


def _client_in_thread(reg_addr: tractor_reg.TCPAddress, tls: tractor_reg.TLSConfig) -> None:
    async def main() -> None:
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], tls=tls, name="c"):
            pass

    from tractor_reg import _state

    saved = _state.maybe_current_actor()
    _state._set_current_actor(None)
    try:
        trio.run(main)
    finally:
        _state._set_current_actor(saved)


def test_bad_tls_files_fail_at_boot(tmp_path: object) -> None:
    from tractor_reg._security import Security

    with pytest.raises(tractor_reg.SecurityConfigError):
        Security.resolve(tls=tractor_reg.TLSConfig(cert=os.path.join(str(tmp_path), "nope")))


# -- limits -------------------------------------------------------------------------------


async def test_registry_limits(reg_addr: tractor_reg.TCPAddress) -> None:
    limits = tractor_reg.RegistryLimits(max_entries=4, max_entries_per_peer=2, max_addrs_per_uid=3)
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], limits=limits):
            async with client(reg_addr, "a", "a-1") as a:
                # too many addresses for one uid
                reply = await a.call(
                    "self",
                    "register_actor",
                    uid=["a", "a-1"],
                    addr=[["127.0.0.1", p] for p in range(30000, 30004)],
                )
                assert isinstance(reply, Error) and reply.type_name == "LimitExceeded"
                assert await a.reg("register_actor", uid=["a", "a-1"], addr=[["127.0.0.1", 30001]])
                async with client(reg_addr, "b", "b-1") as b:
                    assert await b.reg(
                        "register_actor", uid=["b", "b-1"], addr=[["127.0.0.1", 30002]]
                    )
                    # a third entry from the same host (127.0.0.1) is one too many
                    async with client(reg_addr, "c", "c-1") as c:
                        reply = await c.call(
                            "self", "register_actor", uid=["c", "c-1"], addr=[["127.0.0.1", 30003]]
                        )
                        assert isinstance(reply, Error) and reply.type_name == "LimitExceeded"
                        assert "per peer" in reply.message
                        # the others are untouched and may still re-register
                        assert await a.reg("find_actor", name="b") == [["127.0.0.1", 30002]]
                        assert await a.reg(
                            "register_actor", uid=["a", "a-1"], addr=[["127.0.0.1", 30001]]
                        )
                        # once b leaves, c fits
                        assert await b.reg("unregister_actor", uid=["b", "b-1"])
                        assert await c.reg(
                            "register_actor", uid=["c", "c-1"], addr=[["127.0.0.1", 30003]]
                        )


async def test_whole_registry_limit(reg_addr: tractor_reg.TCPAddress) -> None:
    limits = tractor_reg.RegistryLimits(max_entries=2)  # the registrar itself is one
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], limits=limits):
            async with client(reg_addr, "a", "a-1") as a, client(reg_addr, "b", "b-1") as b:
                assert await a.reg("register_actor", uid=["a", "a-1"], addr=[["127.0.0.1", 1]])
                reply = await b.call(
                    "self", "register_actor", uid=["b", "b-1"], addr=[["127.0.0.1", 2]]
                )
                assert isinstance(reply, Error) and reply.type_name == "LimitExceeded"
                assert "full" in reply.message
                assert await b.reg("find_actor", name="a") == [["127.0.0.1", 1]]


async def test_connection_limit(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor_reg.open_root_actor(registry_addrs=[reg_addr], max_connections=2):
            async with client(reg_addr, "a") as a, client(reg_addr, "b") as b:
                async with raw_peer(reg_addr) as extra:
                    msg = await extra.recv()
                    assert isinstance(msg, Error) and msg.type_name == "LimitExceeded"
                    await extra.expect_closed()
                # the two admitted peers are unaffected
                assert await a.reg("ping") and await b.reg("ping")
            # once they leave, new peers are admitted again
            async with client(reg_addr, "c") as c:
                assert await c.reg("ping")


async def test_connection_limit_under_a_burst(reg_addr: tractor_reg.TCPAddress) -> None:
    """Connections arriving together: each is either admitted (its first frame is the
    actor's hello, and it stays usable) or refused (LimitExceeded, then EOF), never
    greeted and then refused; no more than the limit are admitted."""
    limit, burst = 3, 12
    with trio.fail_after(30):
        async with (
            tractor_reg.open_root_actor(registry_addrs=[reg_addr], max_connections=limit),
            contextlib.AsyncExitStack() as stack,
        ):
            peers = [await stack.enter_async_context(raw_peer(reg_addr)) for _ in range(burst)]
            admitted, refused = [], []
            for i, peer in enumerate(peers):
                first = await peer.recv()
                if isinstance(first, Handshake):
                    admitted.append((i, peer))
                else:
                    assert isinstance(first, Error) and first.type_name == "LimitExceeded"
                    await peer.expect_closed()
                    refused.append(i)
            assert len(admitted) == limit and len(refused) == burst - limit
            for i, peer in admitted:
                await peer.send(hello(f"burst{i}", f"burst-{i}"))
                assert await peer.reg("ping")


async def test_exposed_registrar_without_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    addr = ("0.0.0.0", free_port())
    with trio.fail_after(20), caplog.at_level(logging.WARNING, logger="tractor_reg"):
        async with tractor_reg.open_root_actor(registry_addrs=[addr]):
            pass
    assert any("WITHOUT a shared secret" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with trio.fail_after(20), caplog.at_level(logging.WARNING, logger="tractor_reg"):
        async with tractor_reg.open_root_actor(registry_addrs=[addr], secret=SECRET):
            pass
    assert not any("WITHOUT a shared secret" in r.getMessage() for r in caplog.records)
