"""Authentication (a shared secret, challenge-response) and TLS for TCP.

With a shared secret configured, every connection proves in its handshake that both
ends know the secret, without sending it: each side sends a fresh random nonce in its
``Handshake``, then an ``Auth`` frame carrying ``HMAC-SHA256(secret, label | peer
nonce | own nonce | own uuid)``. A peer without the secret (or with another one) is
refused before it can call anything — it can neither read nor write the registry.
Replayed answers fail because every connection uses new nonces.

TLS is independent: when configured, every TCP connection of the actor (listening and
dialling) is wrapped in TLS with certificate verification. Unix sockets are local and
stay plain (their files are owner-only).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
from dataclasses import dataclass

from ._exceptions import TractorRegError

ENV_SECRET_FILE = "TRACTOR_REG_SECRET_FILE"
ENV_TLS_CERT = "TRACTOR_REG_TLS_CERT"
ENV_TLS_KEY = "TRACTOR_REG_TLS_KEY"
ENV_TLS_CA = "TRACTOR_REG_TLS_CA"

_LABEL = b"tractor_reg-auth/1|"
NONCE_SIZE = 32
#: Bytes of a registration's lease token (the proof of owning a registry entry).
LEASE_TOKEN_SIZE = 32
MIN_SECRET_SIZE = 16


class SecurityConfigError(TractorRegError, ValueError):
    """A secret or TLS setting is unusable (missing file, too short, bad certificate)."""


def load_secret(value: bytes | str | os.PathLike[str] | None) -> bytes | None:
    """A secret given as bytes, or read from a file path (str/PathLike); ``None`` passes.

    The file's content is used with surrounding whitespace stripped. Secrets shorter than
    16 bytes are refused.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        secret = value
    else:
        path = os.fspath(value)
        try:
            with open(path, "rb") as fh:
                secret = fh.read().strip()
        except OSError as exc:
            raise SecurityConfigError(f"cannot read the secret file {path}: {exc}") from exc
    if len(secret) < MIN_SECRET_SIZE:
        raise SecurityConfigError(
            f"the shared secret must be at least {MIN_SECRET_SIZE} bytes (got {len(secret)})"
        )
    return secret


def proof(secret: bytes, peer_nonce: bytes, own_nonce: bytes, own_uuid: str) -> bytes:
    """What this side sends: it knows ``secret`` and answers the peer's challenge."""
    msg = _LABEL + peer_nonce + own_nonce + own_uuid.encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


def check_proof(
    secret: bytes, mac: bytes, own_nonce: bytes, peer_nonce: bytes, peer_uuid: str
) -> bool:
    expected = proof(secret, own_nonce, peer_nonce, peer_uuid)
    return hmac.compare_digest(expected, mac)


@dataclass(frozen=True)
class TLSConfig:
    """Certificate files for TLS over TCP.

    ``cert``/``key``: this actor's certificate chain and key (needed to listen; also
    presented to servers that ask for client certificates). ``ca``: the CA bundle that
    peers' certificates must chain to (default: the system's). ``verify_clients``: a
    listening actor requires client certificates signed by ``ca`` (mutual TLS).
    """

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify_clients: bool = False

    def server_context(self) -> ssl.SSLContext:
        if not self.cert:
            raise SecurityConfigError("TLS needs a certificate (cert=...) to accept connections")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise SecurityConfigError(f"cannot load the TLS certificate/key: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify_clients:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise SecurityConfigError(f"cannot load TLS files: {exc}") from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    @classmethod
    def from_env(cls) -> TLSConfig | None:
        cert, key, ca = (os.environ.get(v) for v in (ENV_TLS_CERT, ENV_TLS_KEY, ENV_TLS_CA))
        if not (cert or ca):
            return None
        return cls(cert=cert, key=key, ca=ca)


@dataclass
class Security:
    """An actor's authentication and transport-security settings."""

    secret: bytes | None = None
    tls: TLSConfig | None = None

    def __post_init__(self) -> None:
        self._server_ctx: ssl.SSLContext | None = None
        self._client_ctx: ssl.SSLContext | None = None

    @property
    def server_ctx(self) -> ssl.SSLContext:
        assert self.tls is not None
        if self._server_ctx is None:
            self._server_ctx = self.tls.server_context()
        return self._server_ctx

    @property
    def client_ctx(self) -> ssl.SSLContext:
        assert self.tls is not None
        if self._client_ctx is None:
            self._client_ctx = self.tls.client_context()
        return self._client_ctx

    @classmethod
    def resolve(
        cls,
        secret: bytes | str | os.PathLike[str] | None = None,
        tls: TLSConfig | None = None,
    ) -> Security:
        """Explicit settings first, then ``TRACTOR_REG_SECRET_FILE`` and the TLS variables."""
        if secret is None and os.environ.get(ENV_SECRET_FILE):
            secret = os.environ[ENV_SECRET_FILE]
        security = cls(load_secret(secret), tls if tls is not None else TLSConfig.from_env())
        if security.tls is not None:
            # Fail at boot, not at the first connection, on unusable files.
            security.client_ctx  # noqa: B018
            if security.tls.cert:
                security.server_ctx  # noqa: B018
        return security
