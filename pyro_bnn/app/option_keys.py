"""The keys a group option takes, read without importing the library: an option's file (``conf/<group>/<name>.yaml``)
holds its object's arguments, every one of them, in their order (tested), so :func:`check_option_keys` refuses a key
the chosen object does not take before torch is imported. A ``_target_`` that no option's file names (a user's own
class) is asked for its signature instead, which imports it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, Dict, List, Tuple

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from .schema import CONF_DIR, OptionKeyError

#: The arguments of a group's library object that the run gives in code, never config keys: the guide's model; the
#: network's input shape, outputs (``num_classes`` of a CNN), prior, likelihood and number of training examples.
GIVEN = {"guide": ("model",), "model": ("in_shape", "num_outputs", "num_classes", "prior", "likelihood", "num_data")}
#: The key that chose the library object of a group before options named their ``_target_`` (configs saved up to
#: 7f584d1).
OLD_SELECTORS = {"model": "name", "prior": "family", "guide": "name"}


def option_arguments(target: Callable, group: str) -> List[str]:
    """The arguments of ``target`` (a group option's library object) a config gives: all but those the run gives in
    code (:data:`GIVEN`)."""
    return [name for name in inspect.signature(target).parameters if name not in GIVEN.get(group, ())]


@functools.lru_cache(maxsize=None)
def option_files(group: str) -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """``{option: (its _target_, its keys)}`` of the options of ``conf/<group>`` that name a ``_target_`` (presets
    built on another option name none)."""
    options = {}
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        node = OmegaConf.load(path)
        if node.get("_target_"):
            options[path.stem] = (node._target_, tuple(key for key in node if key not in ("_target_", "defaults")))
    return options


def group_target_names(group: str) -> Dict[str, str]:
    """``{option: its _target_}`` (:func:`option_files`)."""
    return {name: target for name, (target, _) in option_files(group).items()}


def target_keys(group: str, target: str) -> Tuple[str, ...]:
    """The keys the object ``target`` of ``group`` takes: those of the option's file that names it, else (a target of
    the user's own) its arguments (:func:`option_arguments`, which imports it)."""
    for named, keys in option_files(group).values():
        if named == target:
            return keys
    return tuple(option_arguments(get_object(target), group))


def check_option_keys(node: DictConfig, group: str) -> None:
    """Refuse a key of ``node`` its ``_target_`` does not take (:class:`OptionKeyError` naming it, the target's
    arguments and the options of ``conf/<group>`` that take it): it is never dropped without a word."""
    keys = target_keys(group, node._target_)
    for key in node:
        if key == OLD_SELECTORS.get(group):
            options = list(group_target_names(group))
            raise OptionKeyError(f"{group}.{key}={node[key]}: the {key} is the {group} option now: "
                                 + ", ".join(f"{group}={name}" for name in options[:-1]) + f" or {group}={options[-1]}")
        if key != "_target_" and key not in keys:
            takers = [name for name, (target, other_keys) in option_files(group).items()
                      if target != node._target_ and key in other_keys]
            raise OptionKeyError(
                f"{group}.{key}={yaml_text(node[key])}: the {group} {node._target_} does not take it (its keys: "
                f"{', '.join(keys)}); " + (" and ".join(f"{group}={name}" for name in takers)
                                           + (" take it" if len(takers) > 1 else " takes it")
                                           if takers else f"no {group} option takes it")
                + (f"; did you mean {group}.{close[0]}?"
                   if not takers and (close := difflib.get_close_matches(key, keys, n=1))
                   else f"; leave {group}.{key} unset"))


def yaml_text(value) -> str:
    """``value`` as a command line writes it (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
