"""The daemon hides what its first pass holds from the cyclic collector, and objects still go when unreferenced."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import gc, weakref
from reconciler.runtime import collector

class Held:  # stands for what a first pass keeps (the parsed specs, the model, the memos)
    pass

kept = [Held() for _ in range(1000)]
probe = weakref.ref(kept[0])
assert gc.get_freeze_count() == 0
collector.freeze()
frozen = gc.get_freeze_count()
del kept  # no cycle: freed by its reference count although frozen
print(frozen, probe() is None)
"""


def test_freeze_moves_the_heap_out_of_collections_and_frees_what_loses_its_last_reference() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True)
    frozen, freed = out.stdout.split()
    assert int(frozen) >= 1000 and freed == "True"
