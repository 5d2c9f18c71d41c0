"""`tractor-reg serve --secret-file` and the admin commands' credentials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import free_port
from tests.procs import REPO, python, spawn


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "tractor_reg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def test_serve_with_a_secret_file_admits_only_holders(tmp_path: object) -> None:
    secret = os.path.join(str(tmp_path), "secret")
    with open(secret, "w") as fh:
        fh.write("a shared secret that is long enough\n")
    os.chmod(secret, 0o600)
    addr = f"tcp://127.0.0.1:{free_port()}"
    argv = python(
        "-m",
        "tractor_reg",
        "serve",
        "--listen",
        addr,
        "--backend",
        "memory://",
        "--secret-file",
        secret,
        "--log-level",
        "warning",
    )
    with spawn(argv) as reg:
        reg.wait_line("READY")
        denied = _run("ls", "--registry", addr)
        assert denied.returncode != 0
        assert "secret" in denied.stderr and "Traceback" not in denied.stderr
        allowed = _run("ls", "--registry", addr, "--secret-file", secret, "--json")
        assert allowed.returncode == 0, allowed.stderr
        assert '"registrar"' in allowed.stdout
        env_allowed = subprocess.run(
            [sys.executable, "-m", "tractor_reg", "stats", "--registry", addr],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO, TRACTOR_REG_SECRET_FILE=secret),
        )
        assert env_allowed.returncode == 0, env_allowed.stderr
        reg.signal(signal.SIGTERM)
        assert reg.wait(15) == 0


def test_serve_refuses_a_short_secret(tmp_path: object) -> None:
    secret = os.path.join(str(tmp_path), "secret")
    with open(secret, "w") as fh:
        fh.write("short")
    addr = f"tcp://127.0.0.1:{free_port()}"
    done = _run("serve", "--listen", addr, "--backend", "memory://", "--secret-file", secret)
    assert done.returncode != 0
    assert "at least 16 bytes" in done.stderr and "Traceback" not in done.stderr
