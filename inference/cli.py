"""Model commands (train, evaluate) for the ``riskstream`` CLI. Filled in by the inference work."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the model commands to the main ``riskstream`` app."""
    del app
