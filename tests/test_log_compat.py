"""Upstream ``tractor.log``'s surface and its extra log levels, through the public API."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import tractor_reg as tractor
from tests.conftest import free_port
from tests.procs import REPO
from tests.rpc_targets import logtrio

TARGETS = "tests.rpc_targets.logtrio"
EXTRA = {"transport": 5, "runtime": 15, "devx": 17, "io": 21, "cancel": 22, "pdb": 500}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """The tests change the package logger tree; put it back as it was."""
    tree = [
        logging.getLogger(name)
        for name in (
            "tractor_reg",
            "tractor_reg.mymod",
            "tractor_reg.logtrio",
            "tractor_reg.ipc",
            "tractor_reg.spawn",
            "tractor_reg.trionics",
            "logtrio_lib",
            "logtrio_lib.sub",
        )
    ]
    saved = [(lg, lg.level, list(lg.handlers), lg.propagate) for lg in tree]
    yield
    for lg, level, handlers, propagate in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate


# -- levels ----------------------------------------------------------------------------------


def test_extra_levels_are_real_logging_levels() -> None:
    assert {name.upper(): value for name, value in EXTRA.items()} == tractor.log.CUSTOM_LEVELS
    for name, value in EXTRA.items():
        assert logging.getLevelName(value) == name.upper()
        assert logging.getLevelName(name.upper()) == value
        assert tractor.log.LEVELS[name] == value
    assert list(tractor.log.LEVELS) == [
        "transport",
        "debug",
        "runtime",
        "devx",
        "info",
        "io",
        "cancel",
        "warning",
        "error",
        "critical",
        "pdb",
    ]


@pytest.mark.parametrize("given", ["runtime", "RUNTIME", "Cancel", " devx ", "info", "PDB"])
def test_validate_loglevel_accepts_any_case(given: str) -> None:
    assert tractor.log.validate_loglevel(given) == given.strip().lower()


def test_validate_loglevel_passes_none() -> None:
    assert tractor.log.validate_loglevel(None) is None


@pytest.mark.parametrize("bad", ["loud", "", "warn ing", "trace", 10])
def test_unknown_level_is_a_clear_value_error(bad: object) -> None:
    with pytest.raises(tractor.LogLevelError) as info:
        tractor.log.validate_loglevel(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, tractor.TractorRegError)
    message = str(info.value)
    assert repr(bad) in message
    for name in ("debug", "critical", *EXTRA):
        assert name in message


async def test_root_accepts_extra_level_and_refuses_unknown(
    reg_addr: tractor.TCPAddress,
) -> None:
    with trio.fail_after(20):
        async with tractor.open_nursery(registry_addrs=[reg_addr], loglevel="CANCEL"):
            assert logging.getLogger("tractor_reg").level == 22
            assert tractor.log.get_loglevel() == "cancel"
        with pytest.raises(ValueError, match=r"unknown log level 'loud'.*runtime"):
            async with tractor.open_root_actor(registry_addrs=[reg_addr], loglevel="loud"):
                pass
    assert tractor.current_actor(err_on_no_runtime=False) is None


# -- loggers ---------------------------------------------------------------------------------


def test_get_logger_nests_user_loggers_in_the_package_tree() -> None:
    assert tractor.log.get_logger().logger.name == "tractor_reg"
    assert tractor.log.get_logger("mymod").logger.name == "tractor_reg.mymod"
    assert tractor.log.get_logger("tractor_reg.mymod").logger.name == "tractor_reg.mymod"
    # upstream's own package name maps onto ours
    assert tractor.log.get_logger("tractor").logger.name == "tractor_reg"
    assert tractor.log.get_logger("tractor.a.b").logger.name == "tractor_reg.a.b"
    assert tractor.log.get_logger("mymod", mk_sublog=False).logger.name == "tractor_reg"
    assert tractor.log.get_logger("x", pkg_name="logtrio_lib").logger.name == "logtrio_lib.x"
    own = logging.getLogger("logtrio_lib")
    assert tractor.log.get_logger("y", logger=own).logger.name == "logtrio_lib.y"
    with pytest.warns(DeprecationWarning, match="pkg_name"):
        old = tractor.log.get_logger("z", _root_name="logtrio_lib")
    assert old.logger.name == "logtrio_lib.z"


def test_level_methods_emit_at_their_levels_from_the_callers_line() -> None:
    log = tractor.log.get_logger("mymod")
    sink = Collect()
    log.logger.addHandler(sink)
    log.logger.setLevel(1)
    log.transport("t %s", 1)
    line = sys._getframe().f_lineno
    log.runtime("r")
    log.devx("d")
    log.cancel("c", extra={"mine": 7})
    log.pdb("p")
    log.info("i")
    got = [(r.levelname, r.levelno, r.getMessage()) for r in sink.records]
    assert got == [
        ("TRANSPORT", 5, "t 1"),
        ("RUNTIME", 15, "r"),
        ("DEVX", 17, "d"),
        ("CANCEL", 22, "c"),
        ("PDB", 500, "p"),
        ("INFO", 20, "i"),
    ]
    assert {r.filename for r in sink.records} == {Path(__file__).name}
    assert sink.records[1].lineno == line + 1
    cancel = sink.records[3]
    assert cancel.__dict__["mine"] == 7
    assert cancel.__dict__["actor_name"] == "no actor_name context"
    assert cancel.__dict__["task"] == "no task context"


def test_at_least_level_and_level_property() -> None:
    log = tractor.log.get_logger("mymod")
    log.logger.setLevel("RUNTIME")
    assert log.level == "runtime"
    assert log.at_least_level("runtime")
    assert log.at_least_level("Cancel")
    assert not log.at_least_level("debug")
    assert tractor.log.at_least_level(log.logger, 15)
    assert not tractor.log.at_least_level(log, "transport")
    with pytest.raises(ValueError, match="unknown log level"):
        log.at_least_level("chatty")


def test_get_console_log_prints_each_record_once(capfd: pytest.CaptureFixture[str]) -> None:
    root = tractor.log.get_console_log("INFO")
    assert root.logger.name == "tractor_reg"
    assert tractor.log.get_loglevel() == "info"
    sub = tractor.log.get_console_log("runtime", name="mymod")
    tractor.log.get_console_log("info")  # again: no second handler
    sub.runtime("logtrio-sub-record")
    root.debug("logtrio-hidden")
    root.info("logtrio-root-record")
    err = capfd.readouterr().err
    assert err.count("logtrio-sub-record") == 1, err
    assert "RUNTIME" in err
    assert err.count("logtrio-root-record") == 1, err
    assert "logtrio-hidden" not in err
    # a level of None configures nothing
    assert tractor.log.get_console_log().logger.level == logging.INFO
    with pytest.raises(ValueError, match="unknown log level"):
        tractor.log.get_console_log("chatty")


def test_get_console_log_for_a_tree_of_ones_own(capfd: pytest.CaptureFixture[str]) -> None:
    log = tractor.log.get_console_log("cancel", pkg_name="logtrio_lib")
    log.cancel("logtrio-own-tree")
    log.info("logtrio-own-hidden")
    err = capfd.readouterr().err
    assert "CANCEL" in err and "logtrio-own-tree" in err
    assert "logtrio-own-hidden" not in err


IMPORT_TIME_SCRIPT = textwrap.dedent(
    """
    import trio
    import tractor_reg as tractor

    tractor.log.get_console_log("INFO")
    log = tractor.log.get_logger("script")

    async def main():
        async with tractor.open_nursery():
            log.info("logtrio-inside-runtime")
            log.runtime("logtrio-below-info")
        print("DONE", flush=True)

    if __name__ == "__main__":
        trio.run(main)
    """
)


def _run_script(
    tmp_path: Path, name: str, text: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``text`` as a script on a private registry; it must exit 0."""
    script = tmp_path / name
    script.write_text(text)
    full = {
        "PYTHONPATH": REPO,
        "TRACTOR_REG_REGISTRY_ADDRS": f"tcp://127.0.0.1:{free_port()}",
        "PATH": "/usr/bin:/bin",
        **env,
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=full, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done


def test_console_log_at_import_time_like_upstream_examples(tmp_path: Path) -> None:
    done = _run_script(tmp_path, "logtrio_script.py", IMPORT_TIME_SCRIPT)
    assert done.stdout.strip() == "DONE"
    assert "INFO" in done.stderr and "tractor_reg.script" in done.stderr
    assert done.stderr.count("logtrio-inside-runtime") == 1, done.stderr
    assert "logtrio-below-info" not in done.stderr


# -- children --------------------------------------------------------------------------------


async def test_child_loglevels_take_extra_levels(
    reg_addr: tractor.TCPAddress, capfd: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr]) as an:
            daemon = await an.start_actor("lt_rt", enable_modules=[TARGETS], loglevel="Runtime")
            assert await daemon.run(logtrio.emit, marker="M1") == "runtime"
            oneshot = await an.run_in_actor(
                logtrio.emit, name="lt_cancel", loglevel="cancel", marker="M2"
            )
            assert await oneshot.result() == "cancel"
    err = capfd.readouterr().err
    for shown in ("M1 at runtime", "M1 at info", "M1 at cancel", "M1 at warning"):
        assert shown in err, err
    assert "RUNTIME tractor_reg.logtrio" in err
    assert "M1 at debug" not in err and "M1 at transport" not in err
    for shown in ("M2 at cancel", "M2 at warning"):
        assert shown in err, err
    assert "CANCEL  tractor_reg.logtrio" in err
    assert "M2 at info" not in err and "M2 at runtime" not in err


# -- CLI -------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tractor_reg", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_cli_log_level_takes_extra_levels(tmp_path: Path) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    state = {"XDG_STATE_HOME": str(tmp_path)}
    flag = _cli("ls", "--registry", dead, "--log-level", "RUNTIME", env=state)
    # past argument parsing: the unreachable registry is the error, not the level
    assert flag.returncode == 1, flag.stderr
    assert "no registrar answers" in flag.stderr
    assert "unknown log level" not in flag.stderr
    from_env = _cli("ls", "--registry", dead, env={**state, "TRACTOR_REG_LOG_LEVEL": "cancel"})
    assert from_env.returncode == 1, from_env.stderr
    assert "unknown log level" not in from_env.stderr
    # below debug, tracebacks are shown as with debug
    chatty = _cli("ls", "--registry", dead, "--log-level", "transport", env=state)
    assert chatty.returncode == 1 and "Traceback" in chatty.stderr
    bad = _cli("ls", "--log-level", "loud", env=state)
    assert bad.returncode == 2
    assert "unknown log level 'loud'" in bad.stderr and "cancel" in bad.stderr


# -- the IO level ----------------------------------------------------------------------------


def test_io_level_and_method() -> None:
    assert tractor.log.CUSTOM_LEVELS["IO"] == 21
    assert tractor.log.validate_loglevel("IO") == "io"
    log = tractor.log.get_logger("mymod")
    sink = Collect()
    log.logger.addHandler(sink)
    log.logger.setLevel("IO")
    log.info("hidden")
    log.io("io %s", "line")
    line = sys._getframe().f_lineno - 1
    assert [(r.levelname, r.levelno, r.getMessage()) for r in sink.records] == [
        ("IO", 21, "io line")
    ]
    assert sink.records[0].lineno == line


async def test_io_level_in_a_child_actor(
    reg_addr: tractor.TCPAddress, capfd: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr], loglevel="io") as an:
            assert logging.getLogger("tractor_reg").level == 21
            child = await an.start_actor("lt_io", enable_modules=[TARGETS], loglevel="IO")
            assert await child.run(logtrio.emit_at, level="io", marker="M3") == "io"
            assert await child.run(logtrio.emit_at, level="info", marker="M3") == "io"
    err = capfd.readouterr().err
    assert "IO      tractor_reg.logtrio" in err and "M3 at io" in err, err
    assert "M3 at info" not in err


# -- add_log_level ---------------------------------------------------------------------------


@pytest.fixture
def drop_added_levels() -> Iterator[list[str]]:
    """Names the test adds with add_log_level(); removed again afterwards."""
    from tractor_reg import _log
    from tractor_reg import log as log_mod

    added: list[str] = []
    yield added
    for name in added:
        upper = name.upper()
        value = _log.CUSTOM_LEVELS.pop(upper, None)
        _log._rebuild_levels()
        if value is not None:
            logging.addLevelName(value, f"Level {value}")
        log_mod.STD_PALETTE.pop(upper, None)
        log_mod.BOLD_PALETTE["bold"].pop(upper, None)
        if name.lower() in vars(log_mod.StackLevelAdapter):
            delattr(log_mod.StackLevelAdapter, name.lower())
        log_mod._LEVEL_METHODS.discard(name.lower())


def test_add_log_level_makes_a_real_level_with_a_method(drop_added_levels: list[str]) -> None:
    drop_added_levels.append("audit")
    tractor.log.add_log_level("Audit", 25, color="blue")
    assert tractor.log.CUSTOM_LEVELS["AUDIT"] == 25
    assert tractor.log.LEVELS["audit"] == 25
    assert list(tractor.log.LEVELS).index("audit") == list(tractor.log.LEVELS).index("cancel") + 1
    assert logging.getLevelName(25) == "AUDIT"
    assert tractor.log.STD_PALETTE["AUDIT"] == "blue"
    assert tractor.log.BOLD_PALETTE["bold"]["AUDIT"] == "bold_blue"
    assert tractor.log.validate_loglevel("AUDIT") == "audit"
    log = tractor.log.get_logger("mymod")
    sink = Collect()
    log.logger.addHandler(sink)
    log.logger.setLevel("AUDIT")
    log.audit("a %s", 1)  # type: ignore[attr-defined]
    line = sys._getframe().f_lineno - 1
    log.cancel("below audit")
    # re-registering moves the level, and the method follows
    tractor.log.add_log_level("audit", 27, color="red")
    assert tractor.log.LEVELS["audit"] == 27 and logging.getLevelName(27) == "AUDIT"
    assert logging.getLevelName(25) == "Level 25"
    log.audit("b")  # type: ignore[attr-defined]
    got = [(r.levelname, r.levelno, r.getMessage()) for r in sink.records]
    assert got == [("AUDIT", 25, "a 1"), ("AUDIT", 27, "b")]
    assert sink.records[0].lineno == line and sink.records[0].filename == Path(__file__).name
    assert tractor.log.STD_PALETTE["AUDIT"] == "red"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("info", 25, "standard logging level"),
        ("FATAL", 45, "standard logging level"),
        ("nosy", 20, "already belongs to 'info'"),
        ("nosy", 22, "already belongs to 'cancel'"),
        ("two words", 25, "identifier"),
        ("", 25, "identifier"),
        (7, 25, "identifier"),
        ("nosy", 0, "1..1000"),
        ("nosy", 1001, "1..1000"),
        ("nosy", "25", "1..1000"),
        ("nosy", True, "1..1000"),
        ("process", 25, "shadow StackLevelAdapter.process"),
        ("log", 26, "shadow StackLevelAdapter.log"),
        ("level", 26, "shadow StackLevelAdapter.level"),
    ],
)
def test_add_log_level_refuses_bad_input(name: object, value: object, message: str) -> None:
    before = dict(tractor.log.LEVELS)
    with pytest.raises(tractor.LogLevelError, match=message):
        tractor.log.add_log_level(name, value)  # type: ignore[arg-type]
    assert before == tractor.log.LEVELS


def test_add_log_level_refuses_a_bad_colour() -> None:
    with pytest.raises(tractor.LogLevelError, match="colour"):
        tractor.log.add_log_level("nosy", 26, color="")
    assert "nosy" not in tractor.log.LEVELS


ADDED_LEVEL_SCRIPT = textwrap.dedent(
    """
    import os, sys, trio
    import tractor_reg as tractor
    from tests.rpc_targets import logtrio

    tractor.log.add_log_level("audit", 25, "blue")

    async def main():
        addr = os.environ["LT_REG"]
        async with tractor.open_nursery(registry_addrs=[addr]) as an:
            child = await an.start_actor(
                "lt_audit", enable_modules=["tests.rpc_targets.logtrio"], loglevel="audit"
            )
            print(await child.run(logtrio.emit_at, level="audit", marker="M4"), flush=True)
            print(await child.run(logtrio.emit_at, level="cancel", marker="M4"), flush=True)

    trio.run(main)
    """
)


def test_added_level_reaches_child_actors(tmp_path: Path) -> None:
    script = tmp_path / "logtrio_added.py"
    script.write_text(ADDED_LEVEL_SCRIPT)
    env = {"PYTHONPATH": REPO, "LT_REG": f"tcp://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=40
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["audit", "audit"]
    assert "AUDIT   tractor_reg.logtrio" in done.stderr and "M4 at audit" in done.stderr
    assert "M4 at cancel" not in done.stderr


# -- formats, palettes and colour ------------------------------------------------------------


def test_palettes_cover_every_level_and_format_fields() -> None:
    assert set(tractor.log.STD_PALETTE) >= {name.upper() for name in tractor.log.LEVELS}
    assert tractor.log.STD_PALETTE["IO"] == "purple"
    assert {
        "bold": {name: f"bold_{c}" for name, c in tractor.log.STD_PALETTE.items()}
    } == tractor.log.BOLD_PALETTE
    for field in ("{asctime}", "{levelname}", "{name}", "{message}", "{task}", "{actor_name}"):
        assert field in tractor.log.LOG_FORMAT
    assert tractor.log.DATE_FORMAT == "%b %d %H:%M:%S"


COLOUR_SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, trio
    if os.environ.get("LT_NO_COLORLOG"):
        sys.modules["colorlog"] = None  # as if it were not installed
    import tractor_reg as tractor

    tractor.log.get_console_log("INFO")
    log = tractor.log.get_logger("script")

    async def main():
        log.info("lt-before-root")
        async with tractor.open_nursery(loglevel="info"):
            log.info("lt-inside-root")
            logging.getLogger("tractor_reg.ipc").warning("lt-plain-stdlib")

    trio.run(main)
    """
)


def _run_colour_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = _run_script(tmp_path, "logtrio_colour.py", COLOUR_SCRIPT, **env)
    assert "Logging error" not in done.stderr, done.stderr
    for marker in ("lt-before-root", "lt-inside-root", "lt-plain-stdlib"):
        assert done.stderr.count(marker) == 1, done.stderr
    return done


def test_console_log_in_colour_with_colorlog(tmp_path: Path) -> None:
    pytest.importorskip("colorlog")
    done = _run_colour_script(tmp_path, FORCE_COLOR="1")
    assert "\x1b[" in done.stderr
    inside = next(line for line in done.stderr.splitlines() if "lt-inside-root" in line)
    # LOG_FORMAT's fields: the actor, pid and task, the level in brackets, file:line
    assert "(root[" in inside and "pid=" in inside and "task=__main__.main[" in inside
    assert "INFO" in inside and "logtrio_colour.py:" in inside
    stdlib = next(line for line in done.stderr.splitlines() if "lt-plain-stdlib" in line)
    assert "(root[" in stdlib and "WARNING" in stdlib


def test_console_log_colour_only_on_a_terminal(tmp_path: Path) -> None:
    pytest.importorskip("colorlog")
    done = _run_colour_script(tmp_path)
    assert "\x1b[" not in done.stderr
    assert "[INFO]" in done.stderr and "task=" in done.stderr


def test_console_log_plain_without_colorlog(tmp_path: Path) -> None:
    done = _run_colour_script(tmp_path, LT_NO_COLORLOG="1", FORCE_COLOR="1")
    assert "\x1b[" not in done.stderr
    line = next(line for line in done.stderr.splitlines() if "lt-inside-root" in line)
    assert "INFO    tractor_reg.script[" in line and "task=" not in line


# -- pformat_task_uid --------------------------------------------------------------------------


async def test_pformat_task_uid() -> None:
    task = trio.lowlevel.current_task()
    digits = str(id(task))
    assert tractor.log.pformat_task_uid() == f"{task.name}[{digits[-6:]}]"
    assert tractor.log.pformat_task_uid("head") == f"{task.name}[{digits[:6]}]"
    with pytest.raises(ValueError, match="'tail' or 'head'"):
        tractor.log.pformat_task_uid("middle")
    log = tractor.log.get_logger("mymod")
    sink = Collect()
    log.logger.addHandler(sink)
    log.logger.setLevel("INFO")
    log.info("x")
    assert sink.records[0].__dict__["task"] == tractor.log.pformat_task_uid()


def test_pformat_task_uid_outside_a_task() -> None:
    with pytest.raises(RuntimeError):
        tractor.log.pformat_task_uid()


# -- logging specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "default", "parsed"),
    [
        (False, "info", {}),
        ("", None, {}),
        (True, None, {None: "cancel"}),
        (True, "INFO", {None: "info"}),
        ("Runtime", None, {None: "runtime"}),
        (" info ,", None, {None: "info"}),
        ("ipc:debug, spawn:RUNTIME", None, {"ipc": "debug", "spawn": "runtime"}),
        ("backends.sqlite:io", None, {"backends.sqlite": "io"}),
    ],
)
def test_parse_logspec(
    spec: bool | str, default: str | None, parsed: dict[str | None, str]
) -> None:
    assert tractor.log.parse_logspec(spec, default_level=default) == parsed


@pytest.mark.parametrize(
    ("spec", "pkg", "error", "message"),
    [
        ("info,ipc:debug", "tractor_reg", ValueError, "has no ':'"),
        ("ipc:loud", "tractor_reg", tractor.LogLevelError, "unknown log level 'loud'"),
        ("chatty", "tractor_reg", tractor.LogLevelError, "unknown log level"),
        (":debug", "tractor_reg", ValueError, "bad sub-logger name"),
        ("a..b:debug", "tractor_reg", ValueError, "bad sub-logger name"),
        ("tractor_reg.ipc:debug", "tractor_reg", ValueError, "names the package"),
        ("tractor.devx:debug", "tractor_reg", ValueError, "names the package"),
        ("mylib.x:debug,y:info", "mylib", ValueError, "names the package"),
        (3, "tractor_reg", ValueError, "a bool or a str"),
        (None, "tractor_reg", ValueError, "a bool or a str"),
    ],
)
def test_parse_logspec_refuses_bad_specs(
    spec: object, pkg: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tractor.log.parse_logspec(spec, pkg_name=pkg)  # type: ignore[arg-type]


def test_parse_logspec_bad_default_level() -> None:
    with pytest.raises(tractor.LogLevelError, match="unknown log level 'loud'"):
        tractor.log.parse_logspec(True, default_level="loud")


def test_apply_logspec_sets_levels_per_subsystem(capfd: pytest.CaptureFixture[str]) -> None:
    primary, logs = tractor.log.apply_logspec("ipc:debug,spawn:warning", default_level="cancel")
    assert primary == "cancel"
    assert set(logs) == {"tractor_reg.ipc", "tractor_reg.spawn"}
    assert logs["tractor_reg.ipc"].level == "debug"
    # the runtime's own (plain stdlib) loggers are governed, each record printed once
    logging.getLogger("tractor_reg.ipc").debug("lt-ipc-debug")
    logging.getLogger("tractor_reg.spawn").info("lt-spawn-info")
    logging.getLogger("tractor_reg.spawn").warning("lt-spawn-warning")
    tractor.log.get_logger("mymod").info("lt-other-info")
    err = capfd.readouterr().err
    assert err.count("lt-ipc-debug") == 1, err
    assert err.count("lt-spawn-warning") == 1, err
    assert "lt-spawn-info" not in err and "lt-other-info" not in err
    primary, logs = tractor.log.apply_logspec("runtime")
    assert primary == "runtime" and list(logs) == ["tractor_reg"]
    assert tractor.log.get_loglevel() == "runtime"
    assert tractor.log.apply_logspec(False, default_level="info") == ("info", {})


def test_apply_logspec_for_a_tree_of_ones_own(capfd: pytest.CaptureFixture[str]) -> None:
    primary, logs = tractor.log.apply_logspec("sub:info", pkg_name="logtrio_lib")
    assert primary is None and list(logs) == ["logtrio_lib.sub"]
    logs["logtrio_lib.sub"].info("lt-own-sub")
    logging.getLogger("logtrio_lib").info("lt-own-root-hidden")
    err = capfd.readouterr().err
    assert err.count("lt-own-sub") == 1, err
    assert "lt-own-root-hidden" not in err


async def test_apply_logspec_with_a_root_actor(
    reg_addr: tractor.TCPAddress, capfd: pytest.CaptureFixture[str]
) -> None:
    primary, _ = tractor.log.apply_logspec("logtrio:runtime")
    with trio.fail_after(20):
        async with tractor.open_root_actor(registry_addrs=[reg_addr], loglevel=primary or "error"):
            await logtrio.emit(marker="M5")
    err = capfd.readouterr().err
    assert "M5 at runtime" in err and "M5 at warning" in err
    assert "M5 at debug" not in err
    assert logging.getLogger("tractor_reg").level == logging.ERROR


# -- $TRACTOR_LOGLEVEL -------------------------------------------------------------------------


async def test_env_loglevel_wins_over_loglevel_and_reaches_children(
    reg_addr: tractor.TCPAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACTOR_LOGLEVEL", "Runtime")
    with trio.fail_after(30):
        async with tractor.open_nursery(registry_addrs=[reg_addr], loglevel="error") as an:
            assert tractor.log.get_loglevel() == "runtime"
            assert tractor.current_actor().loglevel == "runtime"
            child = await an.start_actor("lt_env", enable_modules=[TARGETS])
            assert await child.run(logtrio.emit, marker="M6") == "runtime"
            # an explicit child level still applies to that child
            other = await an.start_actor("lt_env2", enable_modules=[TARGETS], loglevel="cancel")
            assert await other.run(logtrio.emit, marker="M7") == "cancel"


async def test_bad_env_loglevel_is_a_clear_error(
    reg_addr: tractor.TCPAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACTOR_LOGLEVEL", "loud")
    with trio.fail_after(20):
        with pytest.raises(tractor.LogLevelError, match=r"\$TRACTOR_LOGLEVEL: unknown log level"):
            async with tractor.open_root_actor(registry_addrs=[reg_addr], loglevel="info"):
                pass
    assert tractor.current_actor(err_on_no_runtime=False) is None


def test_cli_serve_ignores_env_loglevel() -> None:
    from tests.procs import registrar_argv, spawn, wait_ready

    # $TRACTOR_LOGLEVEL is for tractor programs' roots: the CLI's level is its own
    argv = registrar_argv(f"tcp://127.0.0.1:{free_port()}", extra=["--log-format", "json"])
    with spawn(argv, env={"TRACTOR_LOGLEVEL": "loud"}) as proc:
        assert "READY" in wait_ready(proc)
        proc.popen.terminate()
        proc.popen.wait(15)
        assert "loud" not in proc.stderr_tail()


# -- get_logger's other parameters -------------------------------------------------------------


def test_get_logger_takes_upstreams_parameters_in_order() -> None:
    # name, pkg_name, _root_name, logger, subsys_spec, mk_sublog, _strict_debug
    log = tractor.log.get_logger("x", "logtrio_lib", None, None, "x:info", False, False)
    assert log.logger.name == "logtrio_lib"
    assert logging.getLogger("logtrio_lib").level == logging.NOTSET  # subsys_spec: no effect
    with pytest.raises(TypeError, match="subsys_spec"):
        tractor.log.get_logger("x", subsys_spec=5)  # type: ignore[arg-type]


def test_get_logger_strict_debug_warns_on_a_repeated_package_name() -> None:
    with pytest.warns(UserWarning, match=r"pass name='mymod' with pkg_name='tractor_reg'"):
        log = tractor.log.get_logger("tractor.mymod", _strict_debug=True)
    assert log.logger.name == "tractor_reg.mymod"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tractor.log.get_logger("mymod", _strict_debug=True).logger.name == (
            "tractor_reg.mymod"
        )
