"""The ``riskstream`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from schemas.export import JSON_DIR, export_json_schemas

#: What ``riskstream produce --from`` reads (``worker.tools.produce.read_event_file``).
EVENT_FILE_FORMAT = (
    "JSON Lines, one record per line: a TransactionEvent v1 object (schemas/json/transaction_event.v1.json), "
    'optionally with a boolean is_fraud member, or a labelled record {"event": {...}, "is_fraud": true} '
    "as riskstream writes them. Blank lines are skipped."
)

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


def _require_tools(command: str) -> None:
    """The tools (demo, produce, verify, bench) are not in the container image, which runs the worker only."""
    import importlib.util

    if importlib.util.find_spec("worker.tools") is None:
        raise _fail(
            f"`riskstream {command}` is a tool this installation leaves out (the container image ships only "
            "the worker); run it from a riskstream checkout or `pip install riskstream`"
        )


@app.command()
def worker(
    config: ConfigOption = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            min=1,
            max=64,
            help="Worker processes on this device, one per core to spare (default: RISKSTREAM_PROCESSES, 1).",
        ),
    ] = None,
) -> None:
    """Run one worker: consume transactions, score them, publish scores and dead letters.

    All settings come from RISKSTREAM_* environment variables and/or --config; see the README.
    SIGTERM drains in-flight work and exits 0; a second signal exits at once.

    Exit codes: 0 drained and stopped; 1 a stage failed; 2 invalid settings or no servable model;
    3 fenced (another instance has this worker id); 4 Kafka authentication or authorization failed;
    5 TLS verification failed; 6 a topic is missing or unfit; 7 undecodable input (with
    consumer.undecodable_batch=stop); 8 no broker reachable at start-up; 130 a second signal.
    """
    from worker.app import Worker
    from worker.errors import WorkerError
    from worker.logs import configure_logging
    from worker.settings import load_settings

    try:
        settings = load_settings(config)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    configure_logging(
        settings.observability.log_level, settings.observability.log_format, static={"worker_id": settings.worker_id}
    )
    count = processes if processes is not None else settings.processes
    if count > 1:
        from worker.processes import Supervisor

        supervisor = Supervisor(settings, count)
        supervisor.install_signal_handlers()
        raise typer.Exit(supervisor.run())
    runner = Worker(settings)
    runner.install_signal_handlers()
    try:
        code = runner.run()
    except WorkerError as exc:
        raise _fail(str(exc), code=exc.exit_code) from None
    raise typer.Exit(code)


@app.command()
def config(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print every setting as a markdown table instead.")
    ] = False,
    config_file: ConfigOption = None,
) -> None:
    """Show the effective settings (secrets masked), validated exactly as the worker would."""
    import json

    from worker.errors import WorkerError
    from worker.settings import load_settings, reference_rows

    if reference:
        typer.echo("| environment variable | default | what it does |\n|---|---|---|")
        for env, default, description in reference_rows():
            typer.echo(f"| `{env}` | {f'`{default}`' if default else ''} | {description} |")
        return
    try:
        settings = load_settings(config_file)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(settings.redacted(), indent=2))


@app.command()
def verify(
    group: Annotated[str | None, typer.Option("--group", help="Consumer group whose commits to check.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config_file: ConfigOption = None,
) -> None:
    """Reconcile the topics: every input offset has its score or dead letter, once, in order.

    Reads the input, scores and dead-letter topics from the settings (read_committed) and reports
    lost offsets, duplicates, per-key order violations, commits behind the end and card numbers.
    Exits 1 when something is lost, out of order or leaked.
    """
    _require_tools("verify")
    import dataclasses
    import json

    from worker.errors import WorkerError
    from worker.kafka_clients import connection_config
    from worker.settings import load_settings
    from worker.tools.verify import verify as reconcile

    try:
        settings = load_settings(config_file)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    report = reconcile(
        connection_config(settings.kafka),
        input_topic=settings.topics.input,
        scores_topic=settings.topics.scores,
        dead_letter_topic=settings.topics.dead_letters,
        group_id=group,
    )
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report), default=str, indent=2))
    else:
        typer.echo(report.summary())
    raise typer.Exit(0 if report.ok_at_least_once else 1)


@app.command(epilog=f"--from reads {EVENT_FILE_FORMAT}")
def produce(
    topic: Annotated[str, typer.Option("--topic", help="Topic to produce to.")] = "transactions",
    count: Annotated[
        int | None,
        typer.Option("--count", min=0, help="How many records to send (default: 10,000 synthetic, or the whole file)."),
    ] = None,
    rate: Annotated[float, typer.Option("--rate", min=0, help="Records per second (0 = as fast as possible).")] = 1000,
    fraud_rate: Annotated[float, typer.Option("--fraud-rate", min=0, max=1, help="Share of fraud events.")] = 0.01,
    poison_rate: Annotated[
        float, typer.Option("--poison-rate", min=0, max=1, help="Share of deliberately invalid records.")
    ] = 0.0,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Replay events from a JSON Lines file (format below).")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="With --from: the file is in the bank's own format (CSV, Parquet, JSON Lines) and this mapping "
            "reads it; rows are sent as they are, for a worker with RISKSTREAM_INPUT__MAPPING.",
        ),
    ] = None,
    restamp: Annotated[
        bool,
        typer.Option(
            "--restamp", help="Set every event_time to its send time (synthetic events are always re-stamped)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    config: ConfigOption = None,
) -> None:
    """Load generator: synthetic transactions, or a file's, at a fixed rate (keyed by account).

    Records get the producer's send time as their Kafka timestamp (the worker's latency budget runs
    from it). Events from --from keep their own event_time unless --restamp is given: a replay that
    re-stamps loses the hour of day, the model's strongest signal. Lines that are not valid events
    are skipped and reported by line number and reason (never their content); the command then
    exits 1 after sending the valid ones.
    """
    _require_tools("produce")
    from kafka import KafkaProducer
    from rich.progress import Progress

    from inference.errors import InferenceError
    from worker.errors import WorkerError
    from worker.kafka_clients import connection_config
    from worker.settings import load_settings
    from worker.tools.produce import (
        BadLine,
        load_producer_config,
        mapped_file_events,
        outgoing_events,
        read_event_file,
        send_paced,
        synthetic_events,
    )

    try:
        settings = load_settings(config)
    except WorkerError as exc:
        raise _fail(str(exc)) from None
    if from_file is not None and not from_file.is_file():
        raise _fail(f"{from_file} does not exist")
    bad_lines: list[BadLine] = []
    bad_rows = None
    if mapping is not None:
        from inference.data import BadRows
        from schemas.mapping import MappingError, load_mapping

        if from_file is None or restamp or poison_rate:
            raise _fail("--mapping goes with --from, and without --restamp or --poison-rate")
        try:
            event_mapping = load_mapping(mapping)
        except MappingError as exc:
            raise _fail(str(exc)) from None
        bad_rows = BadRows()
        total = count
        events = mapped_file_events(from_file, event_mapping, bad_rows)
    elif from_file is not None:
        labelled = read_event_file(from_file, bad_lines)
        total = count
        events = outgoing_events(
            labelled, poison_rate=poison_rate, seed=seed, max_event_bytes=settings.max_event_bytes, restamp=restamp
        )
    else:
        total = count if count is not None else 10_000
        events = synthetic_events(
            total, seed=seed, fraud_rate=fraud_rate, poison_rate=poison_rate, max_event_bytes=settings.max_event_bytes
        )
    producer = KafkaProducer(**connection_config(settings.kafka), **load_producer_config())
    try:
        with Progress(transient=not sys.stderr.isatty()) as progress:
            task = progress.add_task(f"producing to {topic}", total=total)
            report = send_paced(
                producer,
                topic,
                events,
                count=total,
                rate=rate or None,
                on_progress=lambda n: progress.advance(task, n),
            )
    except InferenceError as exc:  # the file cannot be read through the mapping (inference.data.DataError)
        raise _fail(str(exc)) from None
    finally:
        producer.close()
    poison = ", ".join(f"{k}={v}" for k, v in sorted(report.poison.items())) or "none"
    typer.echo(
        f"sent {report.sent} records in {report.seconds:.1f}s ({report.rate:.0f}/s); "
        f"fraud {report.fraud}; poison {poison}"
    )
    if bad_rows is not None and bad_rows.count:
        raise _fail(f"{from_file}: {bad_rows.summary()}; those rows were skipped", code=1)
    if bad_lines:
        shown = "; ".join(f"line {bad.number}: {bad.reason}" for bad in bad_lines[:10])
        more = f"; and {len(bad_lines) - 10} more" if len(bad_lines) > 10 else ""
        raise _fail(
            f"{len(bad_lines)} lines of {from_file} are not transaction events and were skipped: {shown}{more}", code=1
        )


@app.command()
def demo(
    duration: Annotated[float, typer.Option("--duration", min=1, help="Seconds of synthetic traffic.")] = 30.0,
    rate: Annotated[float, typer.Option("--rate", min=1, help="Events per second offered.")] = 500.0,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Checkpoint directory (default: the cached default model, trained if missing)."),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Without --model: the cached model's preset, trained if missing (sequence: a model that "
            "reads account history; the panel shows the worker's account state).",
        ),
    ] = "default",
    fraud_rate: Annotated[float, typer.Option("--fraud-rate", min=0, max=1, help="Share of fraud events.")] = 0.01,
    poison_rate: Annotated[
        float, typer.Option("--poison-rate", min=0, max=1, help="Share of deliberately invalid records.")
    ] = 0.002,
    seed: Annotated[int | None, typer.Option("--seed", help="Generator seed (default: a new one per run).")] = None,
    config: ConfigOption = None,
) -> None:
    """See it work: broker, model, a synthetic stream, live scores and a summary, in one command.

    Without RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS (or [kafka] in --config) a local Kafka broker is
    started from ops/kafka and stopped at the end. Exits 0 when every event got its outcome.
    """
    _require_tools("demo")
    from worker.errors import WorkerError
    from worker.tools.demo import DemoOptions, run_demo

    options = DemoOptions(
        duration_s=duration,
        rate=rate,
        fraud_rate=fraud_rate,
        poison_rate=poison_rate,
        model=model,
        preset=preset,
        config=config,
        seed=seed,
    )
    try:
        summary = run_demo(options)
    except WorkerError as exc:
        raise _fail(str(exc), code=1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", code=130) from None
    raise typer.Exit(0 if summary.ok else 1)


@app.command()
def bench(
    out: Annotated[Path, typer.Option("--out", help="Directory for bench.json, bench.md, p99_vs_load.png.")] = Path(
        "bench-out"
    ),
    loads: Annotated[
        str | None, typer.Option("--loads", help="Offered loads, events/s, ascending (e.g. 100,250,500).")
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.5, help="Measurement window per point.")] = 10.0,
    warmup: Annotated[float, typer.Option("--warmup", min=0, help="Warm-up before each window.")] = 3.0,
    systems: Annotated[
        str, typer.Option("--systems", help="Comma-separated: relay, naive, riskstream-alo, riskstream-eos.")
    ] = "relay,naive,riskstream-alo,riskstream-eos",
    partitions: Annotated[int, typer.Option("--partitions", min=1, help="Partitions per topic.")] = 4,
    model: Annotated[
        Path | None, typer.Option("--model", help="Checkpoint (default: the cached default model, trained if missing).")
    ] = None,
    engine: Annotated[
        bool, typer.Option("--engine", help="Benchmark only the scoring engine (no Kafka): batch sizes x variants.")
    ] = False,
    variants: Annotated[str, typer.Option("--variants", help="With --engine: quantization variants.")] = (
        "fp32,int8,bf16"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="With --engine: print the report as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Benchmark riskstream against a relay ceiling and a naive per-event loop, side by side.

    Sweeps offered loads (open loop) on one broker and writes JSON, a markdown table and a plot of
    p99 latency against load. With --engine, measures the scoring engine alone instead.
    """
    _require_tools("bench")
    from worker.errors import WorkerError

    try:
        if engine:
            from worker.tools.bench.harness import engine_bench

            engine_bench(
                model,
                variants=[v.strip() for v in variants.split(",") if v.strip()],
                as_json=as_json,
                config_file=config,
            )
            return
        from worker.tools.bench.harness import DEFAULT_LOADS, BenchConfig, run_bench
        from worker.tools.bench.report import OUTPUT_FILES

        try:
            bench_config = BenchConfig(
                out_dir=out,
                model=model,
                loads=tuple(float(x) for x in loads.split(",")) if loads else DEFAULT_LOADS,
                systems=tuple(s.strip() for s in systems.split(",")),
                seconds=seconds,
                warmup_s=warmup,
                partitions=partitions,
                config_file=config,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        result = run_bench(bench_config)
    except WorkerError as exc:
        raise _fail(str(exc), code=1) from None
    except KeyboardInterrupt:
        raise _fail(f"interrupted; the systems measured so far are in {out}", code=130) from None
    for name in OUTPUT_FILES:
        typer.echo(str(out / name))
    if result.failures:
        raise _fail(f"{', '.join(result.failures)} failed; see {out / 'logs'}", code=1)


def _register_model_commands() -> None:
    from inference.cli import register

    register(app)


_register_model_commands()


def main() -> None:
    app()
