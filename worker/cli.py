"""The ``riskstream`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (environment variables RISKSTREAM_* override it)."),
]


@schema_app.command("export")
def schema_export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the JSON Schema files into.")] = JSON_DIR,
) -> None:
    """Write the JSON Schemas of TransactionEvent, RiskScore and DeadLetter."""
    for path in export_json_schemas(out):
        typer.echo(str(path))


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Run one worker: consume transactions, score them, publish scores and dead letters.

    All settings come from RISKSTREAM_* environment variables and/or --config; see the README.
    SIGTERM drains in-flight work and exits 0; a second signal exits at once.
    """
    from worker.app import Worker
    from worker.engine import load_engine
    from worker.errors import WorkerError
    from worker.logs import configure_logging
    from worker.settings import load_settings

    try:
        settings = load_settings(config)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        loaded = load_engine(settings)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    runner = Worker(settings, loaded)
    runner.install_signal_handlers()
    raise typer.Exit(runner.run())


@app.command()
def produce(
    topic: Annotated[str, typer.Option("--topic", help="Topic to produce to.")] = "transactions",
    count: Annotated[int, typer.Option("--count", min=0, help="How many records to send.")] = 10_000,
    rate: Annotated[float, typer.Option("--rate", min=0, help="Records per second (0 = as fast as possible).")] = 1000,
    fraud_rate: Annotated[float, typer.Option("--fraud-rate", min=0, max=1, help="Share of fraud events.")] = 0.01,
    poison_rate: Annotated[
        float, typer.Option("--poison-rate", min=0, max=1, help="Share of deliberately invalid records.")
    ] = 0.0,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Replay labelled events from a JSONL file instead.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    config: ConfigOption = None,
) -> None:
    """Load generator: synthetic transactions at a fixed rate (CreateTime stamps, keyed by account)."""
    from kafka import KafkaProducer
    from rich.progress import Progress

    from inference.synthetic import generate, read_jsonl
    from worker.errors import WorkerError
    from worker.kafka_clients import connection_config
    from worker.produce import load_producer_config, outgoing_events, send_paced
    from worker.settings import load_settings

    try:
        settings = load_settings(config)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    if from_file is not None and not from_file.is_file():
        raise _fail(f"{from_file} does not exist")
    labelled = read_jsonl(from_file) if from_file is not None else generate(count, seed=seed, fraud_rate=fraud_rate)
    events = outgoing_events(
        ((item.event, item.is_fraud) for item in labelled), poison_rate=poison_rate, seed=seed,
        max_event_bytes=settings.max_event_bytes,
    )  # fmt: skip
    producer = KafkaProducer(**connection_config(settings.kafka), **load_producer_config())
    try:
        with Progress(transient=not sys.stderr.isatty()) as progress:
            task = progress.add_task(f"producing to {topic}", total=count)
            report = send_paced(
                producer, topic, events, count=count, rate=rate or None,
                on_progress=lambda n: progress.advance(task, n),
            )  # fmt: skip
    finally:
        producer.close()
    poison = ", ".join(f"{k}={v}" for k, v in sorted(report.poison.items())) or "none"
    typer.echo(
        f"sent {report.sent} records in {report.seconds:.1f}s ({report.rate:.0f}/s); "
        f"fraud {report.fraud}; poison {poison}"
    )


def _register_model_commands() -> None:
    from inference.cli import register

    register(app)


_register_model_commands()


def main() -> None:
    app()
