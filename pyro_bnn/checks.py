"""Checks of the library's arguments: one error that names the argument and the fix, before any work.

This module needs no torch (a tensor is recognised once torch is imported), so the app can check a config with it,
and with :mod:`pyro_bnn.options`, before it imports torch. The data a call is given are checked by
:mod:`pyro_bnn.batch_checks`.
"""

from __future__ import annotations

import math
import sys
from numbers import Integral, Real
from typing import Optional


class ArgumentError(ValueError):
    """An argument whose value makes no sense: ``argument=value: fix`` (``argument=value is fix`` with ``joiner=" is "``).

    The argument's name and value travel with the error (:attr:`argument`, :attr:`value`, :attr:`fix`), so a caller
    that names the argument otherwise (the app: a config key) says it in its own words without parsing the text.
    """

    def __init__(self, argument: str, value, fix: str, joiner: str = ": "):
        self.argument, self.value, self.fix, self.joiner = argument, value, fix, joiner
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(f"{argument}={shown}{joiner}{fix}")


def check_count(value, argument: str, minimum: int = 1, maximum: Optional[int] = None) -> int:
    """``value`` as an int, if it is an integer >= ``minimum`` (and <= ``maximum``, where a larger value only
    exhausts memory or time)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ArgumentError(argument, value, f"use an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ArgumentError(argument, value, f"use an integer from {minimum} to {maximum}")
    return int(value)


def check_positive(value, argument: str, what: str = "") -> float:
    """``value`` as a float, if it is a finite number > 0 (a one-element tensor too); ``what``: the value's meaning,
    said in the error."""
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    if torch is not None and isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = value.item()
    meaning = f" ({what})" if what else ""
    if isinstance(value, str):
        raise ArgumentError(argument, value, f"pass a number, not a string{meaning}")
    if isinstance(value, bool) or not isinstance(value, Real) or not (math.isfinite(value) and value > 0):
        raise ArgumentError(argument, value, f"use a finite number > 0{meaning}")
    return float(value)
