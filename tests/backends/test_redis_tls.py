"""rediss:// against a real TLS-only redis-server with a throwaway CA (made with openssl)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import trio

from tests.redis_servers import RedisServer, free_port
from tractor_reg import StoreUnavailable
from tractor_reg.backends import opened_backend

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, str]]:
    """A redis-server that only speaks TLS, its port, and the CA file that signed it."""
    directory = tempfile.mkdtemp(prefix="tr-tls-")
    try:
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=tractor-reg-test-ca",
            cwd=directory,
        )
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
            cwd=directory,
        )
        with open(os.path.join(directory, "ext.cnf"), "w") as fh:
            fh.write("subjectAltName=IP:127.0.0.1\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            cwd=directory,
        )
        port = free_port()
        server = RedisServer(
            port=0,
            directory=directory,
            extra=[
                "--tls-port",
                str(port),
                "--tls-cert-file",
                os.path.join(directory, "server.crt"),
                "--tls-key-file",
                os.path.join(directory, "server.key"),
                "--tls-ca-cert-file",
                os.path.join(directory, "ca.crt"),
                "--tls-auth-clients",
                "no",
            ],
        )
        server.start_without_ping()
        try:
            server.wait_tls(port, os.path.join(directory, "ca.crt"))
            yield port, os.path.join(directory, "ca.crt")
        finally:
            server.kill()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_rediss_with_the_ca_works(tls_redis: tuple[int, str]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?namespace={uuid.uuid4().hex}&ssl_ca_certs={ca}"
    with trio.fail_after(20):
        async with opened_backend(url) as backend:
            entry = await backend.register(("svc", "u1"), [("127.0.0.1", 4000)], 30)
            assert await backend.lookup("svc") == entry
        # durable in Redis: a new backend over TLS sees it
        async with opened_backend(url) as again:
            assert await again.lookup("svc") == entry


async def test_rediss_verifies_the_server_certificate(tls_redis: tuple[int, str]) -> None:
    port, _ = tls_redis
    # no CA given: the system trust store does not know our throwaway CA
    url = f"rediss://127.0.0.1:{port}/0?namespace={uuid.uuid4().hex}&connect_timeout=2"
    with trio.fail_after(20), pytest.raises(StoreUnavailable):
        async with opened_backend(url):
            pass


async def test_rediss_without_verification_when_asked(tls_redis: tuple[int, str]) -> None:
    port, _ = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?namespace={uuid.uuid4().hex}&ssl_cert_reqs=none"
    with trio.fail_after(20):
        async with opened_backend(url) as backend:
            await backend.register(("svc", "u1"), [("127.0.0.1", 4000)], 30)


async def test_plain_redis_url_against_a_tls_port_is_a_clear_error(
    tls_redis: tuple[int, str],
) -> None:
    port, _ = tls_redis
    url = f"redis://127.0.0.1:{port}/0?namespace=x&connect_timeout=1&socket_timeout=1"
    with trio.fail_after(20), pytest.raises(StoreUnavailable):
        async with opened_backend(url):
            pass
