"""One-line error messages: what the CLI prints and what wrapped errors quote."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, or its class name when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
