"""The one way this engine makes a HiGHS solver: silent from its first call.

``highspy.Highs()`` calls a HiGHS method (it enables callbacks) inside its
constructor, before any option can be set, and HiGHS prints its copyright
banner on the first method call unless ``output_flag`` is already off. The
banner goes to the process's stdout from C, past Python's ``sys.stdout``, so
it corrupts ``fleetplane plan -o json`` and anything else piped. The core
class has every method the solvers use and no callbacks, so options can be
set before HiGHS says anything.
"""

from __future__ import annotations

from highspy import _core


def quiet_highs(*, threads: int = 1) -> _core._Highs:
    """A HiGHS instance that never writes to stdout; one thread keeps results reproducible."""
    highs = _core._Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", threads)
    return highs
