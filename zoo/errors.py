"""Exceptions raised by medzoo. Every message names what is wrong and how to fix it."""

from __future__ import annotations


class ZooError(Exception):
    """Base class of every medzoo error."""


class UnknownModelError(ZooError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotAvailableError(ZooError, FileNotFoundError):
    """The checkpoint cannot be obtained (offline, not mirrored, or never published)."""


class ChecksumError(ZooError):
    """A downloaded, mirrored or cached file does not have the expected sha256 or size."""


class UnsafeCheckpointError(ZooError):
    """A pickle that would execute code (or load unexpected objects) was refused."""


class CheckpointFormatError(ZooError):
    """A checkpoint does not have the key layout of the format it claims to be in."""


class AdaptationError(ZooError, ValueError):
    """Weights cannot be fitted to the requested target (channels, plan, strict transfer)."""
