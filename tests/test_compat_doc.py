"""docs/tractor-compat.md stays true: every name it lists resolves on ``tractor_reg``."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

import tractor_reg

DOC = Path(__file__).resolve().parent.parent / "docs" / "tractor-compat.md"
ROW = re.compile(r"^\| `tractor\.(?P<path>[\w.]+)(?:\((?P<kw>\w+)=\))?` \| (?P<status>[^|]+?) \|")
STATUSES = {"supported", "differs", "out of scope"}

#: Every public name of upstream tractor's top-level package (its ``__init__``), plus the
#: public submodules in scope.
UPSTREAM_TOP_LEVEL = {
    "open_actor_cluster", "Context", "context", "MsgStream", "stream", "get_registry",
    "find_actor", "wait_for_actor", "query_actor", "open_nursery", "ActorNursery",
    "RuntimeVars", "current_actor", "current_ipc_ctx", "debug_mode", "get_runtime_vars",
    "is_root_process", "ContextCancelled", "ModuleNotExposed", "MsgTypeError",
    "RemoteActorError", "TransportClosed", "breakpoint", "pause", "pause_from_sync",
    "post_mortem", "msg", "run_daemon", "open_root_actor", "Channel", "Portal", "Actor",
    "Registrar", "Arbiter", "to_asyncio", "log", "trionics", "discovery",
}  # fmt: skip


def _rows() -> list[tuple[str, str | None, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows.append((match["path"], match["kw"], match["status"].strip()))
    return rows


ROWS = _rows()


def _declared(cls: type, name: str) -> bool:
    """An instance attribute the class declares (annotated at class level)."""
    return any(name in vars(klass).get("__annotations__", {}) for klass in cls.__mro__)


def _resolve(path: str) -> Any:
    obj: Any = tractor_reg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tractor_reg.Arbiter
        for part in path.split("."):
            if isinstance(obj, type) and not hasattr(obj, part) and _declared(obj, part):
                return None  # set per instance
            obj = getattr(obj, part)
    return obj


def test_the_page_has_rows_with_known_statuses() -> None:
    assert len(ROWS) > 150
    assert {status for _, _, status in ROWS} == STATUSES


def test_every_upstream_top_level_name_has_a_row() -> None:
    listed = {path for path, kw, _ in ROWS if kw is None and "." not in path}
    assert sorted(UPSTREAM_TOP_LEVEL - listed) == []


@pytest.mark.parametrize(("path", "kw", "status"), ROWS, ids=[f"{p}({k})" for p, k, _ in ROWS])
def test_listed_name_resolves(path: str, kw: str | None, status: str) -> None:
    if status == "out of scope" and kw is None:
        # Present as a stub, or (a module of a non-goal) refusing by name.
        try:
            _resolve(path)
        except tractor_reg.NonGoalError:
            pass
        return
    target = _resolve(path)
    if kw is not None:
        assert kw in inspect.signature(target).parameters, f"{path}() takes no {kw}="
