"""Running the external accelerator tools (atc, ais_bench, trtexec): locate, print, run, capture."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

from tinybert_infer.errors import ToolError


@dataclass
class ToolRun:
    argv: list
    returncode: int
    output: str  # stdout and stderr interleaved, as the user saw them


def require_tool(name: str, hint: str, path: Optional[str] = None) -> str:
    """Absolute path of executable `name` on PATH (or `path` itself), else one clear line on how to get it."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise ToolError(f"{path}: not an executable file")
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found on PATH: {hint}")
    return found


def passthrough(args) -> list:
    """Options given after `--` for the tool itself (argparse.REMAINDER keeps the `--`)."""
    args = list(args or [])
    return args[1:] if args[:1] == ["--"] else args


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would paste it into a shell."""
    return shlex.join([str(a) for a in argv])


def run_streamed(argv: Sequence[str], *, echo: bool = True, env: Optional[dict] = None, cwd=None) -> ToolRun:
    """Run argv, echoing its output live (these tools run for minutes) while keeping a copy to parse."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1, env=env, cwd=cwd)
    except OSError as exc:
        raise ToolError(f"{argv[0]}: could not start ({exc.strerror or exc})") from None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    return ToolRun(argv, proc.wait(), "".join(lines))
