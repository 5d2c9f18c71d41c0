"""The public discovery API types what it yields: checked with mypy on user-style code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

SNIPPET = """
    from typing import assert_type

    import tractor_reg
    from tractor_reg import Portal


    async def main() -> None:
        async with tractor_reg.find_actor("svc") as maybe:
            assert_type(maybe, Portal | None)
        async with tractor_reg.find_actor("svc", raise_on_none=True) as portal:
            assert_type(portal, Portal)
        async with tractor_reg.find_actor("svc", only_first=False) as portals:
            assert_type(portals, list[Portal])
        flag: bool = bool(len("x"))
        async with tractor_reg.find_actor("svc", raise_on_none=flag) as first:
            assert_type(first, Portal | None)
        async with tractor_reg.find_actor("svc", only_first=flag) as either:
            assert_type(either, Portal | list[Portal] | None)
        # A portal's peer always completed its handshake: no narrowing needed.
        async with tractor_reg.wait_for_actor("svc") as found:
            assert_type(found.channel.aid, tractor_reg.Aid)
            name: str = found.channel.aid.name
            uid: tuple[str, str] = found.channel.aid.uid
            assert name and uid
        async with tractor_reg.get_registry() as reg:
            assert_type(reg.channel.aid, tractor_reg.Aid)
"""


@pytest.mark.timeout(180)
def test_discovery_api_gives_precise_types(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(SNIPPET))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--python-version",
            "3.11",
            str(source),
        ]
    )
    assert status == 0, out + err
