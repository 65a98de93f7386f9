"""What every inference backend offers the ais_bench-style driver."""

from __future__ import annotations

import platform
import time
from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple, TypeVar

import numpy as np

from tinybert_infer.layout import INPUT_NAMES

T = TypeVar("T")


class Backend:
    """Runs one batch: feeds {input name: int64 [B, S]} -> logits float32 [B, labels].

    batch_size is the static batch the artefact was built for (None: any batch); seq_len likewise.
    """

    name = "base"
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None
    input_names: Sequence[str] = INPUT_NAMES
    warm = False  # set once a run has gone through it (run/inference.execute then skips ais_bench's warm-up)

    def run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def run_pipelined(self, items: Iterable[Tuple[Dict[str, np.ndarray], T]]) -> Iterator[Tuple[T, np.ndarray, float]]:
        """Runs (feeds, tag) batches in order, yielding (tag, logits, milliseconds) per batch.

        One at a time here; a backend with several execution streams keeps them all busy (OpenVINO)."""
        for feeds, tag in items:
            start = time.perf_counter()
            logits = self.run(feeds)
            yield tag, logits, (time.perf_counter() - start) * 1000.0

    def warm_for(self, feeds: Dict[str, np.ndarray]) -> bool:
        """Whether running feeds would find everything ready (nothing compiled or allocated on the way)."""
        return self.warm

    def describe(self) -> dict:
        """Backend, artefact and library versions, recorded in the run's summary."""
        return {"backend": self.name, "python": platform.python_version(), "numpy": np.__version__}

    def close(self) -> None:
        pass


class WrappedBackend(Backend):
    """A backend that hands every run to `inner` (adding something around it): its shapes, names and warmth are
    the inner one's, so a wrapper made afresh for each run still knows the runtime is warm."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.name = inner.name
        self.batch_size, self.seq_len, self.input_names = inner.batch_size, inner.seq_len, inner.input_names

    @property
    def warm(self) -> bool:
        return self.inner.warm

    @warm.setter
    def warm(self, value: bool) -> None:
        self.inner.warm = value

    def warm_for(self, feeds) -> bool:
        return self.inner.warm_for(feeds)

    def run(self, feeds):
        return self.inner.run(feeds)

    def run_pipelined(self, items):
        return self.inner.run_pipelined(items)

    def describe(self) -> dict:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
