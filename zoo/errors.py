"""Errors a user can act on. Each class has its own exit code; the CLI prints the message as
one line on stderr and exits with that code (tracebacks only with ZOO_DEBUG=1).

Exit codes: 1 unexpected, 2 usage (unknown name, bad option), 3 framework not installed,
4 unreadable or malformed file, 5 checkpoint does not fit the model, 6 unsafe file (a pickle
that would run code), 7 download or network, 8 cannot write the output, 9 verification failed.
"""

from __future__ import annotations


class ZooError(Exception):
    exit_code = 1


class UsageError(ZooError):
    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FrameworkNotInstalledError(ZooError):
    exit_code = 3


class CheckpointFormatError(ZooError):
    exit_code = 4


class NonFiniteError(CheckpointFormatError):
    pass


class UnreadableImageError(ZooError):
    """An evaluation image that cannot be decoded (exit 4, as an unreadable file)."""
    exit_code = 4


class CheckpointMismatchError(ZooError):
    exit_code = 5


class UnsafeCheckpointError(ZooError):
    exit_code = 6


class DownloadError(ZooError):
    exit_code = 7


class OutputError(ZooError):
    exit_code = 8


class VerificationFailed(ZooError):
    exit_code = 9
