"""Compile the simulator's sequential kernels to machine code with numba.

The per-queue recursions (Kiefer–Wolfowitz, join-the-shortest-queue) are
inherently sequential: each request depends on the one before it. In plain
Python they run at ~1 M steps per second; compiled they run at ~100 M, which
is what lets a million-request scenario finish in about a second. Compiled
code is cached on disk next to the module, so only the first run pays the
compile time (~1-2 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., object])


def kernel(func: F) -> F:
    """``numba.njit`` with an on-disk cache, keeping the function's type for mypy."""
    return cast(F, numba.njit(cache=True, nogil=True)(func))
