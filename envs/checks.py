"""Argument checks shared by pgrad's environments."""

from __future__ import annotations

import operator


def int_at_least(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) ``>= minimum``.

    Raises:
        ValueError: naming ``name``, the bound and the value.
    """
    try:
        valid = not isinstance(value, bool) and operator.index(value) >= minimum
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
