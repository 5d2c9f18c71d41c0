"""Upstream tractor's error surface: boxed remote errors, registered error types, the
public exception names, boot failures of children, and the shape of several failures."""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path

import msgspec
import pytest
import trio

import tractor_reg
import tractor_reg as tractor
from tests.procs import pid_alive, python, spawn
from tests.rpc_targets import errors_funcs
from tractor_reg import _msg

ERRS = "tests.rpc_targets.errors_funcs"


# -- boxed_type and the other upstream attributes ---------------------------------------------


@pytest.mark.parametrize("kind", sorted(errors_funcs.BUILTINS))
async def test_builtin_error_boxed_with_its_type(
    reg_addr: tractor_reg.TCPAddress, kind: str
) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[ERRS])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.raise_builtin, kind=kind, message="kaput")
            err = info.value
            expected = errors_funcs.BUILTINS[kind]
            assert type(err) is tractor.RemoteActorError
            assert err.boxed_type is expected
            assert err.src_type is expected
            assert err.boxed_type_str == err.src_type_str == kind
            assert "raise_builtin" in err.tb_str and kind in err.tb_str
            assert err.src_uid == portal.channel.aid.uid
            assert err.relay_uid == err.src_uid
            assert err.relay_path == [err.src_uid]
            assert not err.is_inception()
            # our long-standing attributes still work
            assert err.type_name == kind
            assert "kaput" in err.remote_message
            assert err.remote_traceback == err.tb_str
            assert err.msgdata["boxed_type_str"] == kind
            assert err.msgdata["tb_str"] == err.tb_str
            assert err.reprol() == f"RemoteActorError[{kind}](src_uid={err.src_uid!r})"
            assert f"boxed_type='{kind}'" in err.pformat() and "raise_builtin" in err.pformat()
            unwrapped = err.unwrap()
            assert type(unwrapped) is expected and "raise_builtin" in str(unwrapped)


async def test_registered_and_unregistered_custom_types(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    tractor.reg_err_types([errors_funcs.QuoteError])
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[ERRS])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.raise_quote_error, message="no quote")
            assert info.value.boxed_type is errors_funcs.QuoteError
            assert info.value.src_type is errors_funcs.QuoteError

            # Unregistered: the type is unknown here, as upstream's is; the name remains.
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.raise_unregistered, message="who?")
            err = info.value
            assert err.boxed_type is None and err.src_type is None
            assert err.boxed_type_str == err.type_name == "UnregisteredError"
            assert "who?" in str(err) and "raise_unregistered" in err.tb_str
            assert type(err.unwrap()) is RuntimeError

            # An unregistered type that has a builtin's name is not taken for the builtin.
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.raise_shadowing_timeout)
            assert info.value.boxed_type is None
            assert info.value.boxed_type_str == "TimeoutError"


def test_get_err_type_and_reg_err_types() -> None:
    assert tractor.get_err_type("KeyError") is KeyError
    assert tractor.get_err_type("builtins.KeyError") is KeyError
    assert tractor.get_err_type("ModuleNotExposed") is tractor.ModuleNotExposed
    assert tractor.get_err_type("RemoteActorError") is tractor.RemoteActorError
    assert tractor.get_err_type("SecurityConfigError") is tractor.SecurityConfigError
    assert tractor.get_err_type("TooSlowError") is trio.TooSlowError
    assert tractor.get_err_type("Cancelled") is trio.Cancelled
    assert tractor.get_err_type("NoSuchError") is None
    assert tractor.get_err_type("print") is None  # a builtin, but not an exception type
    assert tractor.get_err_type("otherpkg.KeyError") is None

    class LocalOnlyError(Exception):
        pass

    assert tractor.get_err_type("LocalOnlyError") is None
    tractor.reg_err_types([LocalOnlyError])
    assert tractor.get_err_type("LocalOnlyError") is LocalOnlyError
    assert tractor.get_err_type(f"{__name__}.{LocalOnlyError.__qualname__}") is LocalOnlyError
    # upstream's module path works too
    assert tractor._exceptions.reg_err_types is tractor.reg_err_types
    assert tractor._exceptions.get_err_type("LocalOnlyError") is LocalOnlyError


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        pytest.param(ValueError, "list of exception types", id="a-bare-type"),
        pytest.param("ValueError", "list of exception types", id="a-string"),
        pytest.param([ValueError, int], "not a subclass of BaseException", id="not-an-exception"),
        pytest.param([ValueError()], "not a subclass of BaseException", id="an-instance"),
        pytest.param(42, "list of exception types", id="not-iterable"),
    ],
)
def test_reg_err_types_bad_input(bad: object, match: str) -> None:
    before = tractor.get_err_type("int")
    with pytest.raises(TypeError, match=match):
        tractor.reg_err_types(bad)  # type: ignore[arg-type]
    assert tractor.get_err_type("int") is before is None


def test_get_err_type_bad_input() -> None:
    with pytest.raises(TypeError, match="type name"):
        tractor.get_err_type(KeyError)  # type: ignore[arg-type]


def test_remote_actor_error_constructed_from_a_message() -> None:
    err = tractor.RemoteActorError("it broke", boxed_type=ValueError)
    assert err.message == "it broke" == str(err)
    assert err.boxed_type is ValueError and err.boxed_type_str == "ValueError"
    assert err.src_uid is None and err.tb_str == "" and err.relay_uid is None

    bare = tractor.RemoteActorError("no details")
    assert bare.boxed_type is None and bare.boxed_type_str == "<unknown>"

    full = tractor.RemoteActorError(
        "from a peer",
        boxed_type=KeyError,
        tb_str="Traceback: here\n",
        src_uid=("peer", "1234"),
        canceller=("x", "y"),
    )
    assert full.tb_str == full.remote_traceback == "Traceback: here\n"
    assert full.src_uid == ("peer", "1234")
    assert full.msgdata["canceller"] == ("x", "y")
    assert "Traceback: here" in str(full)

    # ... and from an Error message, as the runtime builds it
    msg = _msg.Error(cid=3, type_name="ZeroDivisionError", message="x", traceback="tb")
    from_msg = tractor.RemoteActorError("boxed", ipc_msg=msg)
    assert from_msg.ipc_msg is msg
    assert from_msg.boxed_type is ZeroDivisionError and from_msg.tb_str == "tb"

    again = pickle.loads(pickle.dumps(full))
    assert type(again) is tractor.RemoteActorError
    assert (again.boxed_type, again.src_uid, again.tb_str) == (
        KeyError,
        ("peer", "1234"),
        full.tb_str,
    )
    crashed = pickle.loads(
        pickle.dumps(tractor.ActorCrashed("gone", boxed_type=tractor.ActorCrashed))
    )
    assert type(crashed) is tractor.ActorCrashed and crashed.boxed_type is tractor.ActorCrashed


def test_remote_actor_error_bad_input() -> None:
    with pytest.raises(TypeError, match="boxed_type must be an exception type"):
        tractor.RemoteActorError("x", boxed_type=int)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ipc_msg must be an Error"):
        tractor.RemoteActorError("x", ipc_msg={"type_name": "KeyError"})  # type: ignore[arg-type]


def test_error_frames_of_older_peers_still_decode() -> None:
    # An error frame with only the fields older versions send.
    frame = msgspec.msgpack.encode(
        {"t": "error", "cid": 5, "type_name": "KeyError", "message": "'k'", "src_uid": ["a", "b"]}
    )
    msg = _msg.decode(frame)
    assert isinstance(msg, _msg.Error)
    assert (msg.type_module, msg.src_type_name, msg.relay_path) == ("", "", [])
    err = tractor.RemoteActorError("old peer", ipc_msg=msg)
    assert err.boxed_type is KeyError and err.src_type is KeyError
    assert err.src_uid == ("a", "b") and err.relay_uid is None


# -- upstream's exception names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bases"),
    [
        ("RemoteActorError", ()),
        ("ContextCancelled", ("RemoteActorError",)),
        ("MsgTypeError", ("RemoteActorError",)),
        ("StreamOverrun", ("RemoteActorError", trio.TooSlowError)),
        ("ModuleNotExposed", (ModuleNotFoundError, "RPCNotAllowed")),
        ("TransportClosed", ()),
        ("NoRuntime", (RuntimeError,)),
        ("ActorFailure", (RuntimeError, "RuntimeFailure")),
        ("ActorTooSlowError", (RuntimeError, "RuntimeFailure")),
        ("InternalError", (RuntimeError,)),
        ("NoResult", (RuntimeError,)),
        ("MessagingError", ()),
        ("ActorNotFound", (RuntimeError, LookupError)),
    ],
)
def test_upstream_exception_names(name: str, bases: tuple[type | str, ...]) -> None:
    exc_type = getattr(tractor, name)
    assert name in tractor.__all__
    assert issubclass(exc_type, tractor.TractorRegError)
    for base in bases:
        assert issubclass(exc_type, getattr(tractor, base) if isinstance(base, str) else base)


def test_transport_closed_as_upstream_builds_it() -> None:
    cause = trio.BrokenResourceError("pipe broke")
    closed = tractor.TransportClosed("gone", src_exc=cause)
    assert closed.message == "gone" == str(closed)
    assert closed.src_exc is cause and closed.__cause__ is cause
    assert tractor.TransportClosed("plain").src_exc is None


def test_non_goal_exception_names_exist_where_upstream_keeps_them() -> None:
    # asyncio infection and the debugger are non-goals: the names exist, never raised.
    for name in ("AsyncioCancelled", "AsyncioTaskExited", "TrioCancelled", "TrioTaskExited"):
        assert issubclass(getattr(tractor._exceptions, name), tractor.TractorRegError)
    assert issubclass(tractor._exceptions.DebugRequestError, RuntimeError)


# -- ModuleNotExposed ---------------------------------------------------------------------------


async def test_module_not_exposed(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("svc", enable_modules=[])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.assert_err)
            err = info.value
            assert err.boxed_type is tractor.ModuleNotExposed
            assert issubclass(err.boxed_type, ModuleNotFoundError)
            assert issubclass(err.boxed_type, tractor.RPCNotAllowed)
            assert ERRS in err.remote_message and "svc" in str(err)
            # a function that is not in an enabled module's namespace stays RPCNotAllowed
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run_from_ns("self", "no_such_endpoint")
            assert info.value.boxed_type is tractor.RPCNotAllowed

            # locally (the root is the registrar: a LocalPortal) it is raised as itself
            async with tractor.get_registry() as local:
                assert isinstance(local, tractor.LocalPortal)
                with pytest.raises(ModuleNotFoundError) as raised:
                    await local.run_from_ns("os", "getpid")
                assert isinstance(raised.value, tractor.ModuleNotExposed)
                assert isinstance(raised.value, tractor.RPCNotAllowed)
                assert raised.value.name == "os"


# -- a child whose enable_modules fail to import ------------------------------------------------


@pytest.fixture
def broken_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A directory on sys.path (children inherit it) holding modules that fail at import."""
    pkg = tmp_path / "brokenmods"
    pkg.mkdir()
    (pkg / "errs_syntax.py").write_text("def broken(:\n    pass\n")
    (pkg / "errs_raises.py").write_text("raise LookupError('failing at import time')\n")
    monkeypatch.syspath_prepend(str(pkg))
    return str(pkg)


BOOT_FAILURES = [
    pytest.param("errs_no_such_module", ModuleNotFoundError, "errs_no_such_module", id="missing"),
    pytest.param("errs_syntax", SyntaxError, "errs_syntax.py", id="syntax-error"),
    pytest.param("errs_raises", LookupError, "failing at import time", id="raises"),
]


@pytest.mark.parametrize("how", ["start_actor", "run_in_actor"])
@pytest.mark.parametrize(("module", "expected", "detail"), BOOT_FAILURES)
async def test_child_import_failure_reaches_parent_boxed(
    reg_addr: tractor_reg.TCPAddress,
    broken_modules: str,
    uds_dir: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    module: str,
    expected: type[BaseException],
    detail: str,
) -> None:
    # the children's Unix sockets go to the runtime directory
    monkeypatch.setenv("XDG_RUNTIME_DIR", uds_dir)
    with trio.fail_after(30):
        async with tractor.open_nursery(
            registry_addrs=[reg_addr], enable_transports=["tcp", "uds"]
        ) as an:
            with pytest.raises(tractor.RemoteActorError) as info:
                if how == "start_actor":
                    await an.start_actor("broken", enable_modules=[module])
                else:
                    await an.run_in_actor(
                        errors_funcs.assert_err, name="broken", enable_modules=[module]
                    )
            err = info.value
            assert type(err) is tractor.RemoteActorError  # not an ActorCrashed
            assert err.boxed_type is expected
            assert err.src_uid is not None and err.src_uid[0] == "broken"
            assert detail in err.tb_str and detail in str(err)
            assert "failed to start" in err.message
            # nothing left behind: no process, no registry entry, no socket file
            assert an.children == {}
            async with tractor.find_actor("broken") as portal:
                assert portal is None
            # and the nursery still works; its socket is the only one in the directory
            good = await an.start_actor("good", enable_modules=[ERRS])
            assert (await good.run(errors_funcs.uid))[0] == "good"
            sockets = [name for _, _, names in os.walk(uds_dir) for name in names]
            assert sockets and all(name.startswith("good@") for name in sockets), sockets


# -- several failing run_in_actor children: one flat group -------------------------------------


@pytest.mark.parametrize("count", [2, 5])
async def test_several_failures_surface_as_one_flat_group(
    reg_addr: tractor_reg.TCPAddress, count: int
) -> None:
    with trio.fail_after(60), pytest.raises(ExceptionGroup) as info:
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            for index in range(count):
                await an.run_in_actor(errors_funcs.fail, name=f"child{index}", index=index)
    members = info.value.exceptions
    assert len(members) == count
    errors = [e for e in members if type(e) is tractor.RemoteActorError]
    assert len(errors) == count  # direct members, no nested group
    assert all(e.boxed_type is ValueError for e in errors)
    assert sorted(e.src_uid[0] for e in errors if e.src_uid) == sorted(
        f"child{i}" for i in range(count)
    )


async def test_flat_group_inside_an_explicit_root_actor(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    # The root actor's own nurseries must not wrap the group on its way out either.
    with trio.fail_after(60), pytest.raises(ExceptionGroup) as info:
        async with tractor.open_root_actor(registry_addrs=[reg_addr]):
            async with tractor.open_nursery() as an:
                for index in range(3):
                    await an.run_in_actor(errors_funcs.fail, name=f"child{index}", index=index)
    members = info.value.exceptions
    assert len(members) == 3
    assert all(type(e) is tractor.RemoteActorError for e in members)


async def test_one_failure_is_the_remote_error_itself(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30), pytest.raises(tractor.RemoteActorError) as info:
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            await an.run_in_actor(errors_funcs.fail, name="only", index=0)
            await an.run_in_actor(errors_funcs.uid, name="fine")
    assert info.value.boxed_type is ValueError


async def test_flat_group_in_a_child_and_boxed_for_its_parent(
    reg_addr: tractor_reg.TCPAddress,
) -> None:
    with trio.fail_after(60):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            # what a child's own nursery raised when three of its children failed
            portal = await an.run_in_actor(errors_funcs.fail_many, name="mid", count=3, catch=True)
            shape = await portal.result()
            assert shape == ["ExceptionGroup", [["RemoteActorError", "ValueError"]] * 3]

    # two such children letting their groups through: one flat group of two
    # RemoteActorErrors, each boxing the child's ExceptionGroup
    with trio.fail_after(60), pytest.raises(ExceptionGroup) as info:
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            for index in range(2):
                await an.run_in_actor(errors_funcs.fail_many, name=f"mid{index}", count=2)
    group = info.value
    assert len(group.exceptions) == 2
    for err in group.exceptions:
        assert type(err) is tractor.RemoteActorError
        assert err.boxed_type is ExceptionGroup
        assert "child 0 failed" in err.tb_str and "child 1 failed" in err.tb_str


async def test_relayed_error_keeps_its_source(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(60):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.start_actor("mid", enable_modules=[ERRS])
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.run(errors_funcs.relay_failure)
    err = info.value
    assert err.boxed_type is tractor.RemoteActorError
    assert err.src_type is KeyError and err.src_type_str == "KeyError"
    assert err.is_inception()
    assert err.src_uid is not None and err.src_uid[0] == "grandchild"
    assert err.relay_uid == portal.channel.aid.uid
    assert [uid[0] for uid in err.relay_path] == ["grandchild", "mid"]
    assert err.message.startswith("KeyError: 'deep' in actor 'grandchild'")
    assert err.message.endswith("(relayed by 'mid')")
    assert "relay_failure" in err.tb_str and "raise_builtin" in err.tb_str


# -- find_actor(raise_on_none=True) --------------------------------------------------------------


async def test_raise_on_none_is_a_runtime_error(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(10):
        async with tractor.open_root_actor(registry_addrs=[reg_addr]):
            with pytest.raises(RuntimeError, match="ghost") as info:
                async with tractor.find_actor("ghost", raise_on_none=True):
                    pass
            assert isinstance(info.value, tractor.ActorNotFound)
            assert isinstance(info.value, LookupError)


# -- upstream's remote_error_propagation example -------------------------------------------------


async def test_remote_error_propagation_scenario(reg_addr: tractor_reg.TCPAddress) -> None:
    pids: list[int] = []
    with trio.fail_after(60), pytest.raises(tractor.RemoteActorError) as info:
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            for i in range(3):
                portal = await an.start_actor(f"actor_{i}", enable_modules=[ERRS])
                pids.append(portal.channel.aid.pid)
            await an.run_in_actor(errors_funcs.assert_err)
    assert info.value.boxed_type is AssertionError
    assert info.value.src_uid is not None and info.value.src_uid[0] == "assert_err"
    assert pids and not any(pid_alive(pid) for pid in pids)


async def test_result_raises_the_boxed_error(reg_addr: tractor_reg.TCPAddress) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            portal = await an.run_in_actor(errors_funcs.assert_err)
            with pytest.raises(tractor.RemoteActorError) as info:
                await portal.result()
            assert info.value.boxed_type is AssertionError


MAIN_REGISTERED = textwrap.dedent(
    """
    import sys, trio
    import tractor_reg as tractor

    class ScriptError(Exception):
        pass

    tractor.reg_err_types([ScriptError])

    async def raise_script_error():
        raise ScriptError("from the script")

    async def main():
        reg = [tractor.parse_address(sys.argv[1])]
        try:
            async with tractor.open_nursery(registry_addrs=reg) as an:
                await an.run_in_actor(raise_script_error)
        except tractor.RemoteActorError as err:
            print("BOXED", err.boxed_type is ScriptError, err.type_name, flush=True)

    if __name__ == "__main__":
        trio.run(main)
    """
)


def test_type_registered_in_a_script_is_rebuilt(
    tmp_path: Path, reg_addr: tractor_reg.TCPAddress
) -> None:
    # The child runs the script as __mp_main__; the parent registered __main__.ScriptError.
    script = tmp_path / "errors_main_registered.py"
    script.write_text(MAIN_REGISTERED)
    with spawn(python(str(script), str(reg_addr))) as proc:
        assert proc.wait_line("BOXED", timeout=30) == "BOXED True ScriptError"
        assert proc.wait(30) == 0, proc.stderr_tail()
