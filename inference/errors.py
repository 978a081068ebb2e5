"""Exceptions of the inference package.

Everything raised on purpose by ``inference`` derives from :class:`InferenceError`, so a caller can
catch the package's failures in one place and still tell them apart by subclass.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Root of every error the inference package raises deliberately."""


class CheckpointError(InferenceError):
    """A model directory is missing, incomplete, corrupt or not servable by riskstream."""


class FeaturizeError(InferenceError):
    """One event cannot be turned into model inputs. The message never contains event data."""


class QuantizationError(InferenceError):
    """A quantization variant is unknown or not available on the requested device."""


class DeviceError(InferenceError):
    """The requested device does not exist or cannot be used."""


class ScoringError(InferenceError):
    """A forward pass failed for a reason other than running out of device memory."""
