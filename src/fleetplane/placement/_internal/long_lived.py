"""Keep the cycle collector's full passes off what a plan holds for its whole run.

A plan over thousands of sites holds millions of container objects from
start to end: the fleet model, the index, the workload views, the candidate
tables. Every full pass of the collector walks all of them and finds nothing
to free, since they are all alive: on 2,000 sites × 20,000 workloads seven
such passes took 4.5 s, 0.8–1.2 s each, a fifth of the plan.

``gc.freeze`` moves every object tracked so far out of the collector's
generations, so later passes walk only what was made since. A plan freezes
what it was given on entry and what each stage leaves for the next
(``settle``); on exit everything is unfrozen, as it was. Frozen objects are
still freed the usual way when their last reference goes; only cyclic
garbage waits, at most until the plan ends (the young generations are
collected before each settle, so little of it is frozen). Not on entry:
what the caller made just before — a fleet loaded or generated, a million
young objects that take 0.6 s to walk — is alive anyway.

When objects are frozen already, someone else manages them — the server's
collection pacer (fleetplane.control.gc_pacing) — and this does nothing.
Inside an outer plan (a solver's own, within the pipeline's) it freezes
into the outer plan's freeze, which the outer plan's exit undoes.
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType

_lock = threading.Lock()
# Whether a LongLivedObjects of this process holds the freeze. Checked before
# gc.get_freeze_count(), which walks every frozen object (0.25 s at 1.5 million).
_held = False


class LongLivedObjects:
    """Context manager: freeze what exists on entry and at each ``settle``; unfreeze on exit."""

    def __init__(self) -> None:
        self._owner = False

    def __enter__(self) -> LongLivedObjects:
        global _held
        with _lock:
            self._owner = not _held and gc.isenabled() and gc.get_freeze_count() == 0
            _held = _held or self._owner
        self._freeze(collect=False)
        return self

    def settle(self) -> None:
        """Freeze what is alive now: call between stages, when what is left lives to the end."""
        self._freeze(collect=True)

    def _freeze(self, *, collect: bool) -> None:
        with _lock:
            if self._owner or _held:
                if collect:
                    # Young cyclic garbage is cheap to find now and would otherwise be frozen too.
                    gc.collect(1)
                gc.freeze()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        global _held
        if self._owner:
            with _lock:
                gc.unfreeze()
                _held = self._owner = False
