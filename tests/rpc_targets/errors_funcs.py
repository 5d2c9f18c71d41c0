"""Functions child actors run in the error-surface tests (tests/test_errors_compat.py)."""

from __future__ import annotations

import tractor_reg

BUILTINS: dict[str, type[Exception]] = {
    "KeyError": KeyError,
    "AssertionError": AssertionError,
    "ZeroDivisionError": ZeroDivisionError,
    "NotImplementedError": NotImplementedError,
}


class QuoteError(Exception):
    """An application error the tests register with reg_err_types()."""


class UnregisteredError(Exception):
    """An application error nobody registers."""


class TimeoutError(Exception):
    """An unregistered application type with a builtin's name."""


async def raise_builtin(kind: str, message: str = "bad") -> None:
    raise BUILTINS[kind](message)


async def raise_quote_error(message: str) -> None:
    raise QuoteError(message)


async def raise_unregistered(message: str) -> None:
    raise UnregisteredError(message)


async def raise_shadowing_timeout() -> None:
    raise TimeoutError("not the builtin")


async def assert_err() -> None:
    assert 0


async def fail(index: int) -> None:
    raise ValueError(f"child {index} failed")


async def fail_many(count: int, catch: bool = False) -> list[object]:
    """Spawn ``count`` failing run_in_actor children; with ``catch``, describe the
    exception the nursery raised instead of letting it propagate."""
    try:
        async with tractor_reg.open_nursery() as an:
            for index in range(count):
                await an.run_in_actor(fail, name=f"grandchild{index}", index=index)
    except ExceptionGroup as group:
        if not catch:
            raise
        return [
            type(group).__name__,
            [
                [type(e).__name__, e.boxed_type_str]
                if isinstance(e, tractor_reg.RemoteActorError)
                else [type(e).__name__, None]
                for e in group.exceptions
            ],
        ]
    return []


async def relay_failure() -> None:
    """Call a failing function in a grandchild and let its RemoteActorError through."""
    async with tractor_reg.open_nursery() as an:
        portal = await an.start_actor("grandchild", enable_modules=[__name__])
        await portal.run(raise_builtin, kind="KeyError", message="deep")


async def uid() -> list[str]:
    return list(tractor_reg.current_actor().uid)
