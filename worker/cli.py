"""The ``riskstream`` command."""

from __future__ import annotations

from pathlib import Path

import typer

from schemas.export import JSON_DIR, export_json_schemas

app = typer.Typer(
    name="riskstream",
    help="Score payment transactions for fraud risk in real time from Kafka.",
    no_args_is_help=True,
    add_completion=False,
)
schema_app = typer.Typer(help="Wire schemas of the input, scores and dead-letter topics.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


@schema_app.command("export")
def schema_export(
    out: Path = typer.Option(JSON_DIR, "--out", help="Directory to write the JSON Schema files into."),
) -> None:
    """Write the JSON Schemas of TransactionEvent, RiskScore and DeadLetter."""
    for path in export_json_schemas(out):
        typer.echo(str(path))


def _register_model_commands() -> None:
    from inference.cli import register

    register(app)


_register_model_commands()


def main() -> None:
    app()
