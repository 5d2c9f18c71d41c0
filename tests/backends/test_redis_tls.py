"""rediss:// against a real TLS-only redis-server with a throwaway CA (made with openssl)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import trio

from tests.redis_servers import RedisServer, free_port
from tests.tls_certs import have_openssl, make_certs
from tractor_reg import StoreUnavailable
from tractor_reg.backends import opened_backend

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not have_openssl(), reason="needs the openssl command"),
]


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, str]]:
    """A redis-server that only speaks TLS, its port, and the CA file that signed it."""
    directory = tempfile.mkdtemp(prefix="tr-tls-")
    try:
        files = make_certs(directory)
        port = free_port()
        server = RedisServer(
            port=0,
            directory=directory,
            extra=[
                "--tls-port",
                str(port),
                "--tls-cert-file",
                files["cert"],
                "--tls-key-file",
                files["key"],
                "--tls-ca-cert-file",
                files["ca"],
                "--tls-auth-clients",
                "no",
            ],
        )
        server.start_without_ping()
        try:
            server.wait_tls(port, files["ca"])
            yield port, files["ca"]
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
