"""Exceptions that the CLI turns into one-line messages and documented exit codes."""


class PipelineError(Exception):
    """Base class: a problem the user can fix; printed as one line, never as a traceback."""

    exit_code = 1


class UsageError(PipelineError):
    """Bad command-line arguments (same code argparse uses)."""

    exit_code = 2


class CheckpointError(PipelineError):
    """The checkpoint folder is missing, incomplete, inconsistent or unsafe."""

    exit_code = 3


class DataError(PipelineError):
    """A TSV file or a preprocessed input folder is malformed."""

    exit_code = 4


class ResultError(PipelineError):
    """A result folder is incomplete, malformed or would be overwritten."""

    exit_code = 5


class ExportError(PipelineError):
    """ONNX export or validation failed (e.g. parity with PyTorch)."""

    exit_code = 6


class ToolError(PipelineError):
    """An external tool (atc, ais_bench, trtexec) is missing or failed."""

    exit_code = 7


class FileSystemError(PipelineError):
    """Reading or writing a file failed at the operating-system level (disk full, permissions, a file
    where a folder should be). Whatever was being written was built aside and has been removed."""

    exit_code = 8

    @classmethod
    def from_os_error(cls, exc: OSError) -> "FileSystemError":
        where = f"{exc.filename}: " if exc.filename else ""
        return cls(f"{where}{exc.strerror or exc}")


INTERRUPTED_EXIT = 130  # Ctrl-C (SIGINT), as shells report it
