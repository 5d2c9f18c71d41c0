"""Upstream ``tractor.log``'s surface and its extra log levels, through the public API."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
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
        for name in ("tractor_reg", "tractor_reg.mymod", "tractor_reg.logtrio", "logtrio_lib")
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


def test_console_log_at_import_time_like_upstream_examples(tmp_path: Path) -> None:
    script = tmp_path / "logtrio_script.py"
    script.write_text(IMPORT_TIME_SCRIPT)
    env = {
        "PYTHONPATH": REPO,
        "TRACTOR_REG_REGISTRY_ADDRS": f"tcp://127.0.0.1:{free_port()}",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
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
