"""All-or-nothing writes: build aside, then move into place."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give the final one normal permissions."""
    os.chmod(path, mode & ~_umask())


def _aside_prefix(final: Path, kind: str) -> str:
    """Hidden sibling name carrying our pid, so a later run can tell leftovers of a killed run (kill -9)."""
    return f".{final.name}.{kind}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_asides(final: Path) -> None:
    """Delete what killed runs left beside `final` (.NAME.partial-PID-*, .NAME.old-PID-*) whose PID is gone."""
    final = Path(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:partial|old)-(\d+)-")
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(final.parent):
            match = pattern.match(entry.name)
            if match and not _pid_alive(int(match.group(1))):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def discard_dir(folder: Path) -> None:
    """Remove a folder we created, first renaming it aside so no half-deleted folder is ever seen under its name."""
    folder = Path(folder)
    aside = Path(tempfile.mkdtemp(prefix=_aside_prefix(folder, "partial"), dir=folder.parent))
    os.rename(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


# Staged entries whose block has not finished. A Ctrl-C can land where no cleanup of the block runs (between
# contextlib's __enter__ returning and the with-block starting, say); the CLI then removes these (discard_pending).
_PENDING: set = set()


@contextlib.contextmanager
def _signals_held():
    """A Ctrl-C waits while a staged entry is made and recorded: it lands before or after, never between the two.
    Python runs signal handlers in the main thread only, whichever thread the kernel picked (blocking the signal
    there would not do: torch's and the runtimes' threads take it), so the handler itself is held back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _make_staged(make) -> Path:
    with _signals_held():
        path = Path(make())
        _PENDING.add(path)
    return path


def _new_stage_file(final: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=_aside_prefix(final, "partial"), dir=final.parent)
    os.close(fd)
    return tmp


def discard_pending() -> None:
    """Remove every staged file or folder whose block never finished (the CLI calls this on Ctrl-C)."""
    for path in list(_PENDING):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        _PENDING.discard(path)


@contextlib.contextmanager
def staged_dir(final: Path):
    """Yield a fresh sibling folder; on success it replaces `final`, on any error it is removed.

    The old folder is kept until the new one is complete, so an interrupted run never leaves
    a mix of old and new files under `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_asides(final)
    stage = None
    try:  # made inside the try, as in staged_file
        stage = _make_staged(lambda: tempfile.mkdtemp(prefix=_aside_prefix(final, "partial"), dir=final.parent))
        yield stage
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
            _PENDING.discard(stage)
        raise
    _publishable(stage, 0o777)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=_aside_prefix(final, "old"), dir=final.parent))
        os.rename(final, old / final.name)
    os.rename(stage, final)
    _PENDING.discard(stage)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_file(final: Path, sweep: bool = True):
    """Yield a temporary path beside `final`; it is renamed onto `final` only if the block succeeds.

    sweep=False skips looking for killed runs' leftovers: for many small files in one fresh folder.
    """
    with staged_files(final, sweep=sweep) as (tmp,):
        yield tmp


@contextlib.contextmanager
def staged_files(*finals: Path, sweep: bool = True):
    """staged_file for outputs that belong together (a graph and its simplified twin): yields one temporary path
    per final path; all are renamed into place when the block succeeds, with Ctrl-C held until the last one is,
    so an interrupted run never leaves a new file beside an old twin."""
    finals = [Path(final) for final in finals]
    temps = []
    try:  # made inside the try: a Ctrl-C right after a file appears still removes it
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            if sweep:
                remove_stale_asides(final)
            temps.append(_make_staged(lambda final=final: _new_stage_file(final)))
        yield temps
        with _signals_held():
            for tmp, final in zip(temps, finals):
                _publishable(tmp, 0o666)
                os.replace(tmp, final)
    except BaseException:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    finally:
        for tmp in temps:
            _PENDING.discard(tmp)


class ClosesOnExit:
    """`with obj:` closes obj on the way out, whatever happened (subclasses define close)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JsonSpool(ClosesOnExit):
    """A JSON array (or object, with keys) that grows on disk instead of in memory, for per-sample records
    (a summary's filesinfo, a manifest's labels). The backing file is unlinked from the start: nothing is
    left behind whatever happens. Written out in place of a value by dump_json / write_json_atomic."""

    def __init__(self, *, keyed: bool = False, directory=None):
        self.keyed = keyed
        self.count = 0
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory)

    def add(self, value, key: Optional[str] = None) -> None:
        item = json.dumps(value)  # default separators ", " and ": "; naming them would build an encoder per call
        if self.keyed:
            item = f"{json.dumps(str(key))}: {item}"
        # Records of a keyed spool go one per line (summary filesinfo), list items on one line (labels).
        self._file.write((("," if self.count else "") + "\n    ") if self.keyed else (", " if self.count else ""))
        self._file.write(item)
        self.count += 1

    def dump_to(self, out) -> None:
        out.write("{" if self.keyed else "[")
        self._file.flush()
        self._file.seek(0)
        shutil.copyfileobj(self._file, out)
        self._file.seek(0, os.SEEK_END)
        out.write(("\n  }" if self.count else "}") if self.keyed else "]")

    def close(self) -> None:
        self._file.close()


def dump_json(obj, out, indent: Optional[int] = 2) -> None:
    """json.dump, except that top-level values may be JsonSpools, which are copied from disk."""
    if not isinstance(obj, dict):
        json.dump(obj, out, indent=indent)
        out.write("\n")
        return
    pad = "\n" + " " * indent if indent else ""
    out.write("{")
    for n, (key, value) in enumerate(obj.items()):
        out.write(("," if n else "") + (pad or (" " if n else "")) + json.dumps(str(key)) + ": ")
        if isinstance(value, JsonSpool):
            value.dump_to(out)
        else:
            out.write(json.dumps(value, indent=indent).replace("\n", pad or "\n"))
    out.write(("\n" if indent and obj else "") + "}\n")


def read_json_object(path: Path, error: type) -> dict:
    """A JSON file that must hold an object (config.json, tokenizer_config.json); anything else is `error`
    with one line naming the file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a JSON object")
    return raw


def write_json_atomic(path: Path, obj) -> None:
    with staged_file(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        dump_json(obj, out)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(path) -> str:
    """file_sha256 of a model graph, computed once per file version (inode, size, times) in a process: a planner
    run asks for a 90 MB graph's several times."""
    stat = os.stat(path)
    return _model_sha256(os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=32)
def _model_sha256(path: str, *_version) -> str:
    return file_sha256(path)
