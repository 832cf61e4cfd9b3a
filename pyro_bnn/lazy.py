"""A package whose public names are those of its modules, each module imported at the first use of one of its names
(PEP 562): ``import pyro_bnn`` and the app's config checks import neither torch nor pyro."""

from __future__ import annotations

import importlib
from typing import Any, Callable, List, Sequence, Tuple


def lazy_names(package: str, modules: Sequence[str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: its public names are the ``__all__`` of its ``modules``
    (names relative to it), in that order; ``package.__all__`` lists them all."""

    def public_names() -> List[str]:
        return [name for module in modules for name in importlib.import_module(f"{package}.{module}").__all__]

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            return public_names()
        for module_name in modules:
            module = importlib.import_module(f"{package}.{module_name}")
            if name in module.__all__:
                value = getattr(module, name)
                setattr(importlib.import_module(package), name, value)
                return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(public_names()))

    return __getattr__, __dir__
