"""Command line: a thin layer over the library. `python -m tinybert_infer <command> --help`.

One module per command (cli/export.py, preprocess.py, infer.py, postprocess.py; the accelerator tools, the
benchmark and score register theirs from their own packages); this one builds the parser and turns every
PipelineError, OSError and Ctrl-C into one line and its exit code."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import NoReturn, Optional, Sequence

from tinybert_infer.cli import export, infer, postprocess, preprocess
from tinybert_infer.errors import INTERRUPTED_EXIT, FileSystemError, PipelineError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinybert_infer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (export, preprocess, infer, postprocess):
        command.add_command(sub)
    for add in _extra_commands():
        add(sub)
    return parser


def _extra_commands():
    """Commands that live in their own modules (accelerator tools, benchmark, corpus scoring)."""
    from tinybert_infer.bench import command as bench
    from tinybert_infer.tools import aisbench, atc, trtexec
    from tinybert_infer.score import command as score

    return [m.add_command for m in (atc, trtexec, aisbench, bench, score)]


class _SigintWatch:
    """Ctrl-C still raises KeyboardInterrupt, and is remembered: a library that turns it into another
    exception on its way out (seen with numpy writing to a pathlib path) still ends as 'interrupted'."""

    seen = False
    _previous = None

    def __enter__(self):
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # leave others' handlers alone
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def _interrupt(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _interrupted() -> int:
    from tinybert_infer.fsutil import discard_pending

    discard_pending()  # staged outputs a Ctrl-C caught where their own cleanup could not run
    print("error: interrupted", file=sys.stderr)
    return INTERRUPTED_EXIT


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sigint = _SigintWatch()
    try:
        with sigint:
            return args.func(args) or 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # disk full, permissions: one line too, never a traceback
        failure = FileSystemError.from_os_error(exc)
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        if not sigint.seen:
            raise
        return _interrupted()


def run(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The process entry point (`python -m tinybert_infer`, the console script, TinyBERT_*.py): main(), then exit
    without the interpreter's teardown (exit_without_teardown). Usage errors and crashes exit the usual way."""
    exit_without_teardown(main(argv))


def exit_without_teardown(code: int) -> NoReturn:
    """End the process once main() has decided its status. What the interpreter's shutdown must do is done here
    (join threads, run atexit: Ray's shutdown, temporary folders, multiprocessing), then os._exit skips tearing
    down every module: 0.66-0.73 s after an export (torch and onnx imported; the export ran ~0.3 s faster),
    during which SIGINT's default action was back, so a Ctrl-C there killed a finished run (status -2, no
    message). Every output is published (renamed into place, closed) before main() returns; only stdio is
    flushed here."""
    import atexit
    import os
    import threading

    try:
        shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    except KeyboardInterrupt:  # Ctrl-C while waiting for a thread: the caller's script must stop too
        code = _interrupted()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (| head): nothing more to say
            stream.flush()
    os._exit(code)
