"""What every inference backend offers the ais_bench-style driver."""

from __future__ import annotations

import platform
from typing import Dict, Optional, Sequence

import numpy as np

from ..layout import INPUT_NAMES


class Backend:
    """Runs one batch: feeds {input name: int64 [B, S]} -> logits float32 [B, labels].

    batch_size is the static batch the artefact was built for (None: any batch); seq_len likewise.
    """

    name = "base"
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None
    input_names: Sequence[str] = INPUT_NAMES

    def run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        """Backend, artefact and library versions, recorded in the run's summary."""
        return {"backend": self.name, "python": platform.python_version(), "numpy": np.__version__}

    def close(self) -> None:
        pass
