"""Model commands for the ``riskstream`` CLI: ``train``, ``evaluate`` and ``bench-engine``.

Heavy imports (torch, transformers) happen inside the commands, so ``riskstream --help`` and the
other sub-commands start fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from inference.errors import InferenceError

_err = Console(stderr=True)


def _split(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise typer.BadParameter(f"give at least one {what}")
    return items


def _ints(text: str) -> list[int]:
    try:
        return [int(item) for item in _split(text, "batch size")]
    except ValueError as exc:
        raise typer.BadParameter("batch sizes must be integers, e.g. 1,64,256") from exc


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the checkpoint to (replaced atomically).")],
    preset: Annotated[
        str, typer.Option("--preset", help="Model size: tiny, default, default-moe or base.")
    ] = "default",
    events: Annotated[
        int | None, typer.Option("--events", min=500, help="Training events (default: the preset's).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data, initialisation and shuffling.")] = 0,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads for training (default: available cores minus one)."),
    ] = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Upper bound on epochs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the training record as JSON.")] = False,
) -> None:
    """Train a DeepSeek-V3-architecture risk model on synthetic transactions and save it."""
    from inference.model import PRESETS
    from inference.train import TrainProgress, train

    if preset not in PRESETS:
        choices = ", ".join(PRESETS)
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {choices}", param_hint="--preset")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=False) as progress:
        task = progress.add_task(f"train {preset}: generating data", total=None, info="")

        def show(update: TrainProgress) -> None:
            if update.phase == "data":
                return
            auc = f"holdout AUC {update.holdout_auc:.4f}" if update.holdout_auc is not None else ""
            loss = f"loss {update.loss:.4f}" if update.loss is not None else ""
            progress.update(
                task,
                description=f"train {preset}: epoch {update.epoch}/{update.epochs} {update.phase}",
                total=update.steps,
                completed=update.step,
                info=auc or loss,
            )

        try:
            result = train(
                out, preset=preset, events=events, seed=seed, threads=threads, max_epochs=max_epochs, on_progress=show
            )
        except (InferenceError, ValueError) as exc:
            _err.print(f"[red]train failed:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
    metadata = result.metadata
    record = {
        "out": str(result.out_dir),
        "name": metadata.name,
        "version": metadata.version,
        "holdout_auc": round(result.holdout_auc, 6),
        "holdout_ap": round(result.holdout_ap, 6),
        "thresholds": {"review": metadata.thresholds.review, "decline": metadata.thresholds.decline},
        "epochs_run": metadata.training["epochs_run"],
        "seconds": round(result.seconds, 1),
    }
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        typer.echo(
            f"saved {record['name']} {record['version']} to {record['out']}: holdout AUC {record['holdout_auc']:.4f}, "
            f"AP {record['holdout_ap']:.4f}, {record['epochs_run']} epochs in {record['seconds']}s"
        )


def evaluate_command(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory to evaluate.")],
    events: Annotated[int, typer.Option("--events", min=100, help="Fresh synthetic events (1% fraud).")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed (training never uses this one).")] = 1_000_003,
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated quantization variants.")] = (
        "fp32,int8,bf16"
    ),
    device: Annotated[str, typer.Option("--device", help="cpu or cuda:N.")] = "cpu",
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads for inference (default: available cores minus one)."),
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.05, help="Throughput measurement per bucket and variant.")
    ] = 0.5,
    buckets: Annotated[str, typer.Option("--buckets", help="Batch sizes to measure throughput at.")] = (
        "64,128,256,512,1024"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """AUC, AP, fp32 agreement, bytes and throughput for each quantization variant of a model."""
    from inference.evaluate import evaluate

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        task = progress.add_task("evaluate", total=None)
        try:
            report = evaluate(
                model,
                events=events,
                seed=seed,
                variants=_split(variants, "variant"),
                device=device,
                threads=threads,
                throughput_seconds=seconds,
                throughput_buckets=_ints(buckets),
                on_progress=lambda message: progress.update(task, description=f"evaluate: {message}"),
            )
        except (InferenceError, ValueError) as exc:
            _err.print(f"[red]evaluate failed:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
    data = report.to_json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{report.model} {report.version}: {report.events} events, {report.fraud_events} fraud")
    for column in ("variant", "AUC", "AP", "max|diff|", "agree", "Linear B", "model B", "best ev/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in data["variants"].items():
        diff = row["max_abs_score_diff_vs_fp32"]
        agreement = row["decision_agreement_vs_fp32"]
        table.add_row(
            name,
            f"{row['auc']:.4f}",
            f"{row['average_precision']:.4f}",
            "-" if diff is None else f"{diff:.1e}",
            "-" if agreement is None else f"{agreement:.2%}",  # decisions equal to fp32's
            f"{row['linear_weight_bytes']:,} ({row['linear_weight_ratio_vs_fp32']:.2f}x fp32)",
            f"{row['model_bytes']:,}",
            f"{row['best_events_per_s']:,.0f} @ {row['best_bucket']}",
        )
    Console().print(table)


def bench_engine_command(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory to benchmark.")],
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated quantization variants.")] = (
        "fp32,int8,bf16"
    ),
    buckets: Annotated[str, typer.Option("--buckets", help="Comma-separated batch sizes.")] = (
        "1,8,32,64,128,256,512,1024"
    ),
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.05, help="Measurement time per bucket and variant.")
    ] = 1.0,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds over all points.")] = 3,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda:N.")] = "cpu",
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads for inference (default: available cores minus one)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Events/s and batch latency per bucket and quantization variant (scorer engine only, no Kafka)."""
    from inference.bench import print_engine_bench, run_engine_bench

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        task = progress.add_task("bench: loading", total=None)
        try:
            report = run_engine_bench(
                model,
                variants=_split(variants, "variant"),
                buckets=_ints(buckets),
                seconds_per_point=seconds,
                threads=threads,
                device=device,
                rounds=rounds,
                on_point=lambda variant, size: progress.update(task, description=f"bench: {variant} @ {size}"),
            )
        except (InferenceError, ValueError) as exc:
            _err.print(f"[red]bench failed:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
    print_engine_bench(report, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the model commands to the main ``riskstream`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("bench-engine")(bench_engine_command)
