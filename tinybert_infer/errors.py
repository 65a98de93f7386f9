"""Exceptions that the CLI turns into one-line messages and documented exit codes."""


class PipelineError(Exception):
    """Base class: a problem the user can fix; printed as one line, never as a traceback. Each subclass
    names its exit code in its class line (documented in docs/errors.md)."""

    exit_code = 1

    def __init_subclass__(cls, exit_code: int = 0, **kwargs):
        super().__init_subclass__(**kwargs)
        if exit_code:
            cls.exit_code = exit_code


class UsageError(PipelineError, exit_code=2):
    """Bad command-line arguments (same code argparse uses)."""


class CheckpointError(PipelineError, exit_code=3):
    """The checkpoint folder is missing, incomplete, inconsistent or unsafe."""


class DataError(PipelineError, exit_code=4):
    """A TSV file or a preprocessed input folder is malformed."""


class ResultError(PipelineError, exit_code=5):
    """A result folder is incomplete, malformed or would be overwritten."""


class ExportError(PipelineError, exit_code=6):
    """ONNX export or validation failed (e.g. parity with PyTorch)."""


class ToolError(PipelineError, exit_code=7):
    """An external tool (atc, ais_bench, trtexec) is missing or failed."""


class FileSystemError(PipelineError, exit_code=8):
    """Reading or writing a file failed at the operating-system level (disk full, permissions, a file
    where a folder should be). Whatever was being written was built aside and has been removed."""

    @classmethod
    def from_os_error(cls, exc: OSError) -> "FileSystemError":
        where = f"{exc.filename}: " if exc.filename else ""
        return cls(f"{where}{exc.strerror or exc}")


INTERRUPTED_EXIT = 130  # Ctrl-C (SIGINT), as shells report it
