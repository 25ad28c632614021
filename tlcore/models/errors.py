"""Errors raised by :mod:`tlcore.models`. Each message names the file or model and the problem."""

from __future__ import annotations


class WeightsNotFoundError(FileNotFoundError):
    """A pre-trained weights file is not where it was expected.

    The message gives the exact path to put the file at, the file's name as torchvision's
    weights enum names it, and the command that fetches it.
    """


class NotApplicableError(ValueError):
    """The requested combination does not exist in the study (an NA row of the paper's tables)."""


class StateDictMismatchError(RuntimeError):
    """A state dict does not fit the architecture; the message lists missing, unexpected
    and wrongly shaped keys."""
