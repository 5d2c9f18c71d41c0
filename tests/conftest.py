"""Shared fixtures: free addresses, short UDS dirs, and a no-leftover-process check."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tractor_reg


def free_port() -> int:
    """A TCP port the OS just reported free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def reg_addr() -> tractor_reg.TCPAddress:
    """A fresh loopback registry address (never the user default 1616)."""
    return tractor_reg.TCPAddress("127.0.0.1", free_port())


@pytest.fixture
def uds_dir() -> Iterator[str]:
    """A short directory for Unix sockets (pytest's tmp_path can exceed 107 bytes)."""
    path = tempfile.mkdtemp(prefix="tr-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Every test must leave no child process (running or zombie) behind."""
    before = _children(os.getpid())
    yield
    from tests.redis_servers import LONG_LIVED

    leftover = _children(os.getpid()) - before - LONG_LIVED
    if leftover:
        for pid in leftover:
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        pytest.fail(f"test left child processes behind: {sorted(leftover)}")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the user's registry/backend/secret settings, and nothing they
    start writes to the user's state directory (the daemon's default SQLite file)."""
    for var in (
        "TRACTOR_REG_REGISTRY_ADDRS",
        "TRACTOR_REG_BACKEND",
        "TRACTOR_REG_SECRET_FILE",
        "TRACTOR_REG_TLS_CERT",
        "TRACTOR_REG_TLS_KEY",
        "TRACTOR_REG_TLS_CA",
        "TRACTOR_REG_LOG_LEVEL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
