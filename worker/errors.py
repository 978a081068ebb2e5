"""Errors the worker raises. Poison records never raise: they become dead letters."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the worker raises."""


class ConfigError(WorkerError):
    """Settings are invalid; the message is one line an operator can act on."""


class FencedError(WorkerError):
    """Another instance took over this worker's transactional id or group generation."""


class ModelUnavailableError(WorkerError):
    """The model directory is missing or cannot be loaded."""
