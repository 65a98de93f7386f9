"""All-or-nothing writes: build aside, then move into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give the final one normal permissions."""
    os.chmod(path, mode & ~_umask())


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield a fresh sibling folder; on success it replaces `final`, on any error it is removed.

    The old folder is kept until the new one is complete, so an interrupted run never leaves
    a mix of old and new files under `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _publishable(stage, 0o777)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.rename(final, old / final.name)
    os.rename(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_file(final: Path):
    """Yield a temporary path beside `final`; it is renamed onto `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.partial-", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publishable(Path(tmp), 0o666)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj) -> None:
    with staged_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
