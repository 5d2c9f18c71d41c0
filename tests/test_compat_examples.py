"""The scenarios of upstream tractor's discovery and spawning examples, written as our own
programs (``examples/tractor_scenes/*.py``, each ``import tractor_reg as tractor`` and
upstream-style code) and run as real scripts: functions defined in the script are run in
child actors, which load it as ``__mp_main__``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import free_port
from tests.procs import REPO, Proc, pid_alive, python, spawn

PROGS = Path(REPO) / "examples" / "tractor_scenes"


def run_scene(name: str, env: dict[str, str] | None = None, timeout: float = 40.0) -> list[str]:
    """Run ``<name>.py`` to completion on a private registry; its stdout lines."""
    registry = {"TRACTOR_REG_REGISTRY_ADDRS": f"tcp://127.0.0.1:{free_port()}"}
    with spawn(python(str(PROGS / f"{name}.py")), env={**registry, **(env or {})}) as p:
        code = p.wait(timeout)
        lines = _stdout(p)
        assert code == 0, f"exit code {code}; stdout {lines}; stderr:\n{p.stderr_tail()}"
        return lines


def _stdout(proc: Proc) -> list[str]:
    assert proc.popen.stdout is not None
    return proc.popen.stdout.read().decode("utf-8", "replace").splitlines()


def _value(lines: list[str], key: str) -> str:
    for line in lines:
        if line.startswith(key):
            return line[len(key) :].strip()
    raise AssertionError(f"no {key!r} line in {lines}")


def test_two_oneshots_find_each_other() -> None:
    lines = run_scene("two_oneshots")
    assert "first heard: I am second" in lines
    assert "second heard: I am first" in lines


def test_error_propagation_cancels_daemons() -> None:
    lines = run_scene("error_propagation")
    assert _value(lines, "boxed:") == "AssertionError"
    assert _value(lines, "src:") == "fail"
    pids = [int(p) for p in _value(lines, "daemons:").split()]
    assert len(pids) == 3
    assert not any(pid_alive(pid) for pid in pids)


def test_worker_pool_concurrent_calls() -> None:
    lines = run_scene("worker_pool")
    answers = {int(n): (flag == "True", who) for n, flag, who in (line.split() for line in lines)}
    assert answers[97][0] and answers[7919][0] and answers[104729][0] and answers[65537][0]
    assert not (answers[100][0] or answers[7920][0] or answers[1][0])
    assert {who for _, who in answers.values()} == {"worker_0", "worker_1", "worker_2"}


def test_cluster_torn_down_by_keyboard_interrupt() -> None:
    lines = run_scene("cluster_interrupt")
    assert "interrupted" in lines
    assert _value(lines, "names:") == "root.worker_0 root.worker_1 root.worker_2"
    pids = [int(p) for p in _value(lines, "pids:").split()]
    assert len(pids) == 3
    assert not any(pid_alive(pid) for pid in pids)


def test_uds_tree(uds_dir: str) -> None:
    lines = run_scene(
        "uds_tree", env={"TRACTOR_REG_REGISTRY_ADDRS": f"uds://{uds_dir}/registry.sock"}
    )
    assert "proto: uds" in lines
    assert "peer pid matches: True" in lines
    assert _value(lines, "child addr:").startswith(f"uds://{uds_dir}/uds_kid@")
    assert os.listdir(uds_dir) == []


def test_causality_and_registry() -> None:
    lines = run_scene("causality")
    assert lines == [
        "daemon: answered from a child",
        "daemon again: answered from a child",
        "registry is local: True",
        "found: daemon",
        "oneshot: answered from a child",
    ]


def test_inherit_parent_main() -> None:
    lines = run_scene("no_inherit")
    assert lines == ["script function ran in inheriting", "refused: RPCNotAllowed"]


def test_program_run_with_python_dash_m() -> None:
    """``python -m pkg.mod``: children import the program by name (relative imports in
    it work) and run its functions."""
    registry = {"TRACTOR_REG_REGISTRY_ADDRS": f"tcp://127.0.0.1:{free_port()}"}
    argv = python("-m", "tests.compat_progs.mainpkg.app")
    with spawn(argv, env=registry) as p:
        code = p.wait(40)
        lines = _stdout(p)
        assert code == 0, f"exit code {code}; stdout {lines}; stderr:\n{p.stderr_tail()}"
    assert lines == ["RESULT HELLO FROM GREETER", "DAEMON HELLO FROM DAEMON"]
