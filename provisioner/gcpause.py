"""The cyclic garbage collector paused while a stage builds millions of small objects.

The mapping engine and the planner build a few objects per person (dicts, tuples, dataclasses)
and hardly any reference cycles: reference counting frees what they drop. The cyclic collector
still runs every 700 allocations and, as the live objects grow, walks all of them again and
again — a quarter to a third of a 50,000-pupil preview's time. Paused for such a stage, it
resumes afterwards (when it was on before: a nested pause does not turn it on early), with what
the stage built counted as old.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Run the body without the cyclic collector; objects are still freed by their counts."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # What the stage built would otherwise be walked by the next young collection (all
            # of it counts as new: ~3 s at 400,000 pupils) and again when promoted. Freezing and
            # unfreezing moves every tracked object to the oldest generation without a walk;
            # a full collection still finds any cycle among them.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
