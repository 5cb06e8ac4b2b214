"""Schedules as plain data: ``to_config`` / ``from_config`` for lrtune's own schedule classes.

Every schedule in :mod:`lrtune.schedules` is a frozen dataclass of numbers (and, for
:class:`~lrtune.schedules.join.Joined`, of other schedules), so it round-trips through JSON.
``from_config`` only rebuilds classes defined in ``lrtune.schedules`` (never an arbitrary
import path), which makes a config from an untrusted file safe to load.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from lrtune.schedules.primitives import Schedule

_PACKAGE = "lrtune.schedules."


def to_config(schedule: Schedule) -> dict[str, Any]:
    """A JSON-ready dict describing ``schedule``.

    Raises:
        ValueError: ``schedule`` is not one of lrtune's schedule classes (a lambda, say).

    Examples:
        >>> from lrtune.schedules import linear
        >>> to_config(linear(0.1, 0.0, 10))
        {'class_name': 'Linear', 'module': 'lrtune.schedules.primitives', 'config': {'init_value': 0.1, 'end_value': 0.0, 'steps': 10}}
    """  # noqa: E501
    cls = type(schedule)
    if not (dataclasses.is_dataclass(schedule) and cls.__module__.startswith(_PACKAGE)):
        raise ValueError(f"only lrtune's schedules (lrtune.schedules) have a config, "
                         f"got {schedule!r}")

    def encode(value):
        if dataclasses.is_dataclass(value):
            return to_config(value)
        if isinstance(value, tuple | list):
            return [encode(v) for v in value]
        return value

    fields = {f.name: encode(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)}
    return {"class_name": cls.__name__, "module": cls.__module__, "config": fields}


def from_config(config: dict[str, Any]) -> Schedule:
    """The schedule that :func:`to_config` described.

    Raises:
        ValueError: the config is malformed or names a class outside ``lrtune.schedules``.

    Examples:
        >>> from lrtune.schedules import one_cycle
        >>> s = one_cycle(1.0, total_steps=100)
        >>> from_config(to_config(s)) == s
        True
    """
    if not isinstance(config, dict) or not {"class_name", "module", "config"} <= config.keys():
        raise ValueError(f"a schedule config needs class_name, module and config, got {config!r}")
    module, name = config["module"], config["class_name"]
    if not (isinstance(module, str) and module.startswith(_PACKAGE)):
        raise ValueError(f"a schedule config may only name lrtune.schedules classes, "
                         f"got module {module!r}")
    cls = getattr(importlib.import_module(module), str(name), None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"{module} has no schedule class {name!r}")

    def decode(value):
        if isinstance(value, dict) and "class_name" in value:
            return from_config(value)
        if isinstance(value, list):
            return tuple(decode(v) for v in value)
        return value

    return cls(**{key: decode(value) for key, value in config["config"].items()})
