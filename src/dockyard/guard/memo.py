"""Caches for the guard's pure decisions on the data path.

Clients repeat the same requests (a CI job's CLI pings, inspects and polls the same things),
and every answer here is immutable, so remembering them is safe. Each cache is bounded in
entries and in the size of the inputs it keeps: longer inputs are decided afresh, so a
client sending distinct large requests cannot make the guard hold more than
``ENTRIES x LARGEST`` per cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

ENTRIES = 1024
LARGEST = 2048
"""The largest input (characters or bytes, as ``size`` counts) whose answer is kept."""


def cached(size: Callable[..., int]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Remember ``function``'s answers for inputs ``size`` finds small enough."""

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        remembered = functools.lru_cache(maxsize=ENTRIES)(function)

        @functools.wraps(function)
        def decide(*args: P.args, **kwargs: P.kwargs) -> R:
            if size(*args, **kwargs) > LARGEST:
                return function(*args, **kwargs)
            return remembered(*args, **kwargs)  # type: ignore[arg-type]

        return decide

    return wrap
