"""``riskstream distill``, ``riskstream prune`` and ``riskstream compress report``: make a served
model smaller and show what that costs (see :mod:`inference.distill`, :mod:`inference.prune`,
:mod:`inference.compress`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inference.cli import (
    BadOption,
    HoldoutAccountsOption,
    HoldoutFractionOption,
    JsonOption,
    LabelOption,
    MappingOption,
    MinCountOption,
    SeedOption,
    SinceOption,
    SplitOption,
    SplitSeedOption,
    TrainThreadsOption,
    ValidationFractionOption,
    _holdout_accounts,
    _ints,
    _mapping,
    _since,
    check_split,
    report_training,
    training_progress,
)
from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.dataset import SplitMode

_err = Console(stderr=True)
compress_app = typer.Typer(help="Compare compressed models: quality against cost.", no_args_is_help=True)

RequiredData = Annotated[
    Path,
    typer.Option(
        "--data", help="The labelled file the model was trained on (same --split, fractions and --seed as train)."
    ),
]
TemperatureOption = Annotated[
    float, typer.Option("--temperature", min=0.05, help="Softens the teacher's scores (Hinton et al.: T > 1).")
]


def _fail(what: str, exc: Exception) -> typer.Exit:
    from inference.data import DataError

    kind = "data" if isinstance(exc, DataError) else what
    _err.print(f"[red]{kind} error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def distill_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="The teacher checkpoint (e.g. --preset large).")],
    student_preset: Annotated[
        str, typer.Option("--student-preset", help="The student's preset; it must read the teacher's history.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the student to (replaced atomically).")],
    data: RequiredData,
    temperature: TemperatureOption = 2.0,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0, max=1.0, help="Weight of the teacher's scores (the labels: 1 - alpha).")
    ] = 0.5,
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    split: SplitOption = "time",
    holdout_fraction: HoldoutFractionOption = 0.2,
    validation_fraction: ValidationFractionOption = 0.1,
    min_count: MinCountOption = 5,
    max_bad_fraction: BadOption = 0.01,
    seed: SeedOption = 0,
    threads: TrainThreadsOption = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Upper bound on epochs.")] = None,
    transfer: Annotated[
        Path | None,
        typer.Option(
            "--transfer", help="More events in --data's format, labels ignored: learnt from the teacher's scores only."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a student preset from the labels and a teacher's softened scores (knowledge distillation).

    The student trains as `train --data` would (same split, featurization, early stopping and
    thresholds); the loss adds alpha x the KL divergence to the teacher's scores at --temperature.
    The teacher must have been trained on the same --data with the same split options and seed.
    """
    from inference.distill import distill_on_data
    from inference.model import PRESETS

    if student_preset not in PRESETS:
        raise typer.BadParameter(f"choose one of {', '.join(PRESETS)}", param_hint="--student-preset")
    check_split(split)
    event_mapping = _mapping(mapping, data)
    with training_progress(f"distill {student_preset}", data) as show:
        try:
            result = distill_on_data(
                out,
                data,
                teacher,
                student_preset=student_preset,
                temperature=temperature,
                alpha=alpha,
                mapping=event_mapping,
                label_field=label_field,
                split=cast("SplitMode", split),
                holdout_fraction=holdout_fraction,
                validation_fraction=validation_fraction,
                min_count=min_count,
                max_bad_fraction=max_bad_fraction,
                seed=seed,
                threads=threads,
                max_epochs=max_epochs,
                transfer=transfer,
                on_progress=show,
            )
        except (InferenceError, ValueError) as exc:
            raise _fail("distill", exc) from exc
    report_training(result, data, as_json)


def prune_command(
    model: Annotated[Path, typer.Option("--model", help="The checkpoint to prune.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the pruned checkpoint to.")],
    data: RequiredData,
    heads: Annotated[
        float, typer.Option("--heads", min=0.0, max=0.99, help="Share of attention heads to remove.")
    ] = 0.0,
    ffn: Annotated[
        float, typer.Option("--ffn", min=0.0, max=0.99, help="Share of FFN neurons to remove (dense and experts).")
    ] = 0.0,
    experts: Annotated[
        float, typer.Option("--experts", min=0.0, max=0.99, help="Share of routed experts to remove (MoE layers).")
    ] = 0.0,
    recovery_epochs: Annotated[
        int, typer.Option("--recovery-epochs", min=0, help="Fine-tune epochs after pruning (0: none).")
    ] = 1,
    distill_alpha: Annotated[
        float,
        typer.Option(
            "--distill-alpha",
            min=0.0,
            max=1.0,
            help="Weight of the unpruned model's scores in the fine-tune (0: labels).",
        ),
    ] = 0.5,
    temperature: TemperatureOption = 2.0,
    calibration_rows: Annotated[
        int, typer.Option("--calibration-rows", min=64, help="Training rows importance is measured on.")
    ] = 4096,
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    split: SplitOption = "time",
    holdout_fraction: HoldoutFractionOption = 0.2,
    validation_fraction: ValidationFractionOption = 0.1,
    min_count: MinCountOption = 5,
    max_bad_fraction: BadOption = 0.01,
    seed: SeedOption = 0,
    threads: TrainThreadsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove whole attention heads, FFN neurons and routed experts by measured importance.

    The output is a smaller Hugging Face checkpoint (config updated; loads with from_pretrained),
    fine-tuned for --recovery-epochs, by default distilled from the unpruned model.
    """
    from inference.prune import PruneFractions, prune_on_data

    check_split(split)
    event_mapping = _mapping(mapping, data)
    with training_progress("prune", data) as show:
        try:
            result = prune_on_data(
                model,
                out,
                data,
                PruneFractions(heads=heads, ffn=ffn, experts=experts),
                recovery_epochs=recovery_epochs,
                distill_alpha=distill_alpha,
                temperature=temperature,
                calibration_rows=calibration_rows,
                mapping=event_mapping,
                label_field=label_field,
                split=cast("SplitMode", split),
                holdout_fraction=holdout_fraction,
                validation_fraction=validation_fraction,
                min_count=min_count,
                max_bad_fraction=max_bad_fraction,
                seed=seed,
                threads=threads,
                on_progress=show,
            )
        except (InferenceError, ValueError) as exc:
            raise _fail("prune", exc) from exc
    pruning = result.metadata.training["pruning"]
    if not as_json:
        before = pruning["from"]
        typer.echo(
            f"pruned {before['parameters']:,} -> {pruning['parameters']:,} parameters: heads "
            f"{before['num_attention_heads']} -> {pruning['num_attention_heads']}, "
            f"FFN {before['intermediate_size']} -> {pruning['intermediate_size']}"
            + (
                f", expert FFN {before['moe_intermediate_size']} -> {pruning['moe_intermediate_size']}, "
                f"routed experts {before['n_routed_experts']} -> {pruning['n_routed_experts']}"
                if before["n_routed_experts"] is not None
                else " (no MoE layers)"
            )
        )
    report_training(result, data, as_json)


@compress_app.command("report")
def report_command(
    models: Annotated[
        list[str],
        typer.Argument(help="LABEL=DIR or LABEL=DIR@VARIANT (fp32, int8, bf16...), e.g. teacher=models/large"),
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Labelled events (default: synthetic ones).")] = None,
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    since: SinceOption = None,
    holdout_accounts: HoldoutAccountsOption = None,
    split_seed: SplitSeedOption = 0,
    max_bad_fraction: BadOption = 0.01,
    events: Annotated[int, typer.Option("--events", min=100, help="Without --data: synthetic events.")] = 20_000,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda:N.")] = "cpu",
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for inference.")] = None,
    buckets: Annotated[str, typer.Option("--buckets", help="Batch sizes to measure events/s at.")] = "1,32,64,256",
    seconds: Annotated[float, typer.Option("--seconds", min=0.05, help="Timing per bucket and model.")] = 1.0,
    latency_runs: Annotated[int, typer.Option("--latency-runs", min=10, help="Batches of 32 timed for p99.")] = 200,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Resamples for AUC intervals, paired across models (0: none).")
    ] = 200,
    reference: Annotated[
        str | None, typer.Option("--reference", help="The label AUC differences are taken to (default: the first).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write report.json and pareto.png here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """AUC, recall at 1% alerts, events/s, p99 at batch 32 and sizes for each model; a Pareto plot."""
    from inference.compress import LATENCY_BUCKET, Entry, compression_report, write_pareto_plot

    try:
        entries = [Entry.parse(text) for text in models]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="MODELS") from exc
    try:
        result = compression_report(
            entries,
            data=data,
            mapping=_mapping(mapping, data),
            label_field=label_field,
            since=_since(since),
            accounts=_holdout_accounts(holdout_accounts, split_seed, data),
            max_bad_fraction=max_bad_fraction,
            events=events,
            device=device,
            threads=threads,
            buckets=_ints(buckets),
            seconds=seconds,
            latency_runs=latency_runs,
            bootstrap=bootstrap,
            reference=reference,
            on_progress=lambda message: _err.print(message, highlight=False, markup=False),
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            result["plot"] = str(write_pareto_plot(result, out / "pareto.png"))
    except (InferenceError, ValueError) as exc:
        raise _fail("compress report", exc) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    first = next(iter(result["models"].values()))
    table = Table(
        title=f"{result['source']}: {first['events']:,} events, {first['fraud_events']:,} fraud; "
        f"{result['device']}, {result['threads']} thread(s)"
    )
    columns = (
        "model",
        "params",
        "disk B",
        "Linear B",
        "AUC",
        f"AUC - {result['reference']} (95%)",
        "AP",
        "recall@1%",
        "best ev/s",
        f"p99 ms @{LATENCY_BUCKET}",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, row in result["models"].items():
        table.add_row(
            f"{label}{' *' if row['pareto'] else ''} ({row['variant']})",
            f"{row['parameters']:,}",
            f"{row['bytes_on_disk']:,}",
            f"{row['linear_weight_bytes']:,}",
            f"{row['auc']:.4f}",
            _interval(row.get(f"auc_diff_vs_{result['reference']}_ci95")),
            f"{row['average_precision']:.4f}",
            f"{row['recall_at_1pct']:.1%}",
            f"{row['best_events_per_s']:,.0f} @ {row['best_bucket']}",
            f"{row[f'p99_ms_at_{LATENCY_BUCKET}']:.2f}",
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print("* on the Pareto front (no other model both better and faster)", highlight=False, markup=False)
    if out is not None:
        console.print(f"wrote {out / 'report.json'} and {result['plot']}", highlight=False, markup=False)


def _interval(bounds: list[float] | None) -> str:
    return "-" if bounds is None else f"{bounds[0]:+.4f} .. {bounds[1]:+.4f}"


def register(app: typer.Typer) -> None:
    app.command("distill")(distill_command)
    app.command("prune")(prune_command)
    app.add_typer(compress_app, name="compress")
