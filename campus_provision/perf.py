"""Small performance helpers shared by the loader and the renderer."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many short-lived objects.

    Loading or rendering 10,000 PCs allocates a few hundred thousand objects and no
    cycles worth collecting mid-way; the collector's repeated passes over them halve
    the speed. It is switched back on (if it was on) when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
