"""Work done in a fresh spawned process, so that its memory is returned when it ends: the benchmark's cells, and
the planner's artefact building (fusing, ORT and NNCF quantisation load whole graphs and calibration data)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def call_in_child(fn, *args, **kwargs):
    """fn(*args, **kwargs) in a fresh spawned process (fn at module level; arguments and result picklable).
    Its exceptions are raised here."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()
