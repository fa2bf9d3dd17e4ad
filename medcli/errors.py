"""Exceptions and the exit codes they map to.

Every error a user can cause ends as one line on stderr and one of these exit
codes; the table is repeated in the README and the man pages.
"""

from __future__ import annotations

from pathlib import Path

#: Exit codes, documented in README.md and medcli(1).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: an exception medcli did not expect
EXIT_USAGE = 2  # bad command line (unknown option, missing argument, ...)
EXIT_INPUT = 3  # an input file is missing, unreadable or invalid
EXIT_PROCESSING = 4  # the input was valid but processing or writing failed
EXIT_PARTIAL = 5  # a batch ran, but some of its inputs failed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it with --debug output)",
    EXIT_USAGE: "bad usage: unknown option, missing or invalid argument",
    EXIT_INPUT: "bad input: a file is missing, unreadable, corrupt or unsuitable",
    EXIT_PROCESSING: "processing failed: model unavailable, output not writable, disk full, ...",
    EXIT_PARTIAL: "some inputs of a batch failed (the others were written)",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C or SIGTERM (no partial output is left)",
}


class MedcliError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = EXIT_PROCESSING

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        # One line whatever a library put in the text (a DICOM UID with a newline, a multi-line parser message).
        self.message = " ".join(message.split()) if "\n" in message or "\r" in message else message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InputError(MedcliError):
    """An input is missing, unreadable, corrupt or unsuitable for the command."""

    exit_code = EXIT_INPUT


class ProcessingError(MedcliError):
    """Valid input, but the work or the writing of its result failed."""

    exit_code = EXIT_PROCESSING


class UsageError(MedcliError):
    """A combination of arguments that cannot work."""

    exit_code = EXIT_USAGE
