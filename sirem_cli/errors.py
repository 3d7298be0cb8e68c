"""Exceptions raised by the library. Only the CLI prints them and exits."""

from __future__ import annotations


class SiremError(Exception):
    """Base class of every error sirem raises on purpose.

    The message is one line that names the file (when there is one) and what is wrong;
    the CLI prints it as is and exits non-zero.
    """


class InputError(SiremError):
    """A user-supplied file or argument is missing, unreadable or inconsistent."""


class FormatError(InputError):
    """A file exists but does not have the expected structure, shape, dtype or values."""


class NonFiniteError(InputError):
    """Input data hold NaN or Inf values (the caller may add the file and dataset)."""


class OutputError(SiremError):
    """An output cannot be written (unwritable folder, existing file without --overwrite)."""


class BackendUnavailable(SiremError):
    """A requested compute backend (CUDA, cufinufft, pretrained weights) is not available."""


class ShapeError(SiremError, ValueError):
    """An array handed to a library function has the wrong shape or dtype."""
