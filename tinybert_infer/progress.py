"""Progress bars (tqdm) that stay quiet when stderr is not a terminal unless asked."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def log_stderr(msg: str) -> None:
    """A log line for the user, beside the results on stdout (spawned children use it too)."""
    print(msg, file=sys.stderr, flush=True)


def progress(*, total=None, desc="", unit="it", enabled=True):
    # Disabled under pytest/CI logs unless TINYBERT_PROGRESS=1; on a terminal always shown.
    forced = os.environ.get("TINYBERT_PROGRESS")
    if forced is not None:
        enabled = enabled and forced not in ("0", "")
    else:
        enabled = enabled and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, mininterval=0.5, leave=False)
