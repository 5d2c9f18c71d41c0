"""A throwaway CA and a certificate for 127.0.0.1, made with the openssl command."""

from __future__ import annotations

import os
import shutil
import subprocess


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: str) -> dict[str, str]:
    """Files in ``directory``: ``ca`` (and its key), ``other_ca`` (an unrelated CA), and
    ``cert``/``key`` for 127.0.0.1 signed by ``ca``. Returns their paths by role."""
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "1",
            "-subj",
            f"/CN={ca}",
            cwd=directory,
        )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
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
        "node.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=directory,
    )
    return {
        role: os.path.join(directory, name)
        for role, name in [
            ("cert", "node.crt"),
            ("key", "node.key"),
            ("ca", "ca.crt"),
            ("other_ca", "other-ca.crt"),
        ]
    }
