"""The value rules of user-facing config checks, shared by the run config and the method configs; each
failure raises ConfigError with one line naming the field, the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any

from ltkd.errors import ConfigError


def require(ok: bool, message: str) -> None:
    """ConfigError(`message`) unless `ok`."""
    if not ok:
        raise ConfigError(message)


def fractions_problem(fractions: tuple[float, ...], num_classes: int) -> str | None:
    """What is wrong with group `fractions` for `num_classes` classes (None: nothing): each must be > 0, they
    must sum to 1, and every group must get at least one class."""
    if not fractions:
        return "empty list; give one fraction per group, summing to 1"
    if not all(f > 0 for f in fractions):
        return f"{list(fractions)} has a fraction <= 0; all must be > 0"
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        return f"{list(fractions)} sums to {sum(fractions):g}; the fractions must sum to 1"
    sizes = [round(f * num_classes) for f in fractions[:-1]]
    sizes.append(num_classes - sum(sizes))
    if not all(s >= 1 for s in sizes):
        return f"{list(fractions)} leaves a group empty with {num_classes} classes (sizes {sizes})"
    return None


def check_fractions(key: str, fractions: tuple[float, ...], num_classes: int) -> None:
    """ConfigError naming config key `key` when `fractions_problem` finds one."""
    problem = fractions_problem(fractions, num_classes)
    require(problem is None, f"{key}: {problem}")


def check_non_negative(section: str, values: Any, *keys: str) -> None:
    """ConfigError for the first of the attributes `keys` of `values` (config section `section`) that is < 0."""
    for key in keys:
        value = getattr(values, key)
        require(value >= 0, f"{section}.{key}: {value:g}; must be >= 0")


def check_positive(key: str, value: float) -> None:
    """ConfigError unless `value` (config key `key`) is > 0."""
    require(value > 0, f"{key}: {value:g}; must be > 0")
