"""Helpers for the bad-input tests: run the CLI in-process, snapshot folders, check one-line errors."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
from pathlib import Path

from tinybert_infer.cli.main import main


def run_main(*args) -> tuple[int, str, str]:
    """`python -m tinybert_infer ARGS` in this process (fast); returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_error(code: int, stderr: str, expected_code: int, *fragments) -> None:
    """One line `error: ...` with each fragment in it, and the documented exit status."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("\r")]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{stderr}"
    assert len(errors) == 1 and len(lines) == 1, f"expected one error line and nothing else, got:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert str(fragment) in errors[0], f"{fragment!r} not in {errors[0]!r}"


def snapshot(folder) -> dict:
    """Every file under folder (hidden ones too) -> sha256 of its bytes; every folder -> "dir"."""
    folder = Path(folder)
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[str((Path(root) / name).relative_to(folder))] = "dir"
        for name in files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(folder) -> list[str]:
    """Hidden partial/aside entries that an all-or-nothing write must not leave."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


class WritesMarker:
    """Pickles as `open(marker, 'w')`: unpickling it creates the marker file, i.e. runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def stop_mid_way(proc: subprocess.Popen, sig: int, still_running=lambda: True) -> tuple[int, str]:
    """sig to a run that is still mid-way: it is stopped (SIGSTOP) first and still_running() checked, so a
    test process starved on a busy host never signals a run that has in fact just finished."""
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None and still_running(), "the run had finished before the signal; test not conclusive"
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err
