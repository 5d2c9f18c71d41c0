"""A helper the program imports relatively (which only works as a package module)."""

from __future__ import annotations


def shout(text: str) -> str:
    return text.upper()
