"""Model commands for the ``riskstream`` CLI: ``train``, ``evaluate``, ``thresholds``, ``data example``
and ``bench-engine``.

Heavy imports (torch, transformers) happen inside the commands, so ``riskstream --help`` and the
other sub-commands start fast.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.dataset import SplitMode
    from inference.evaluate import HoldoutAccounts
    from inference.example_data import ExampleFormat
    from inference.train import TrainProgress, TrainResult
    from schemas.mapping import EventMapping

_err = Console(stderr=True)
_SPLITS = ("time", "account", "time+account")

DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Labelled file: JSON Lines of TransactionEvent v1, or CSV/Parquet/JSON via --mapping."),
]
MappingOption = Annotated[
    Path | None, typer.Option("--mapping", help="TOML mapping from the file's own format to TransactionEvent v1.")
]
LabelOption = Annotated[
    str,
    typer.Option("--label-field", help="Label field (1/true = fraud) when the mapping has no label section."),
]
BadOption = Annotated[
    float,
    typer.Option("--max-bad-fraction", min=0, max=1, help="Abort when more than this share of rows is unusable."),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Use only events at or after this ISO time (e.g. the holdout start train printed)."),
]
HoldoutAccountsOption = Annotated[
    float | None,
    typer.Option(
        "--holdout-accounts",
        min=0.001,
        max=0.999,
        help="Use only the accounts a --split account/time+account run held out with this --holdout-fraction.",
    ),
]
SplitSeedOption = Annotated[int, typer.Option("--split-seed", help="The --seed of that training run.")]
SplitOption = Annotated[
    str, typer.Option("--split", help="Holdout by time (latest period), account (unseen accounts) or both.")
]
HoldoutFractionOption = Annotated[
    float, typer.Option("--holdout-fraction", min=0.01, max=0.9, help="Share held out (rows by time, or accounts).")
]
ValidationFractionOption = Annotated[
    float,
    typer.Option("--validation-fraction", min=0.01, max=0.5, help="Latest share of training rows for validation."),
]
MinCountOption = Annotated[
    int, typer.Option("--min-count", min=1, help="Vocabulary: values seen fewer times get the unknown token.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for data, split, initialisation and shuffling.")]
TrainThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="CPU threads for training (default: available cores minus one)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the training record as JSON.")]


def _fraction(text: str | None, option: str) -> float | None:
    """``"2%"`` or ``"0.02"`` -> 0.02; ``BadParameter`` for anything else."""
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a fraction; write e.g. 2% or 0.02", param_hint=option) from None
    if not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{text!r} must be within (0, 1], e.g. 2% or 0.02", param_hint=option)
    return value


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--since") from None
    if moment.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. 2026-01-27T00:00:00Z", param_hint="--since")
    return moment


def _holdout_accounts(fraction: float | None, seed: int, data: Path | None) -> HoldoutAccounts | None:
    if fraction is None:
        return None
    if data is None:
        raise typer.BadParameter("--holdout-accounts needs --data", param_hint="--holdout-accounts")
    from inference.evaluate import HoldoutAccounts

    return HoldoutAccounts(fraction=fraction, seed=seed)


def _mapping(path: Path | None, data: Path | None) -> EventMapping | None:
    if path is None:
        return None
    if data is None:
        raise typer.BadParameter("--mapping needs --data", param_hint="--mapping")
    from schemas.mapping import MappingError, load_mapping

    try:
        return load_mapping(path)
    except MappingError as exc:
        _err.print(f"[red]invalid mapping:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2) from None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


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


def check_split(split: str) -> None:
    if split not in _SPLITS:
        raise typer.BadParameter(f"choose one of {', '.join(_SPLITS)}", param_hint="--split")


@contextlib.contextmanager
def training_progress(label: str, data: Path | None) -> Iterator[Callable[[TrainProgress], None]]:
    """A progress bar on stderr for a training run, and the callback that moves it."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=False) as progress:
        task = progress.add_task(f"{label}: {'reading data' if data else 'generating data'}", total=None, info="")

        def show(update: TrainProgress) -> None:
            if update.phase == "data":
                return
            if update.phase in ("read", "featurize", "history"):
                what = {"read": "reading", "featurize": "featurizing", "history": "replaying histories of"}[
                    update.phase
                ]
                progress.update(
                    task,
                    description=f"{label}: {what} {data.name if data else ''}",
                    total=update.steps,
                    completed=update.step,
                    info=f"{update.step:,} rows",
                )
                return
            auc = f"{update.evaluated_on} AUC {update.holdout_auc:.4f}" if update.holdout_auc is not None else ""
            loss = f"loss {update.loss:.4f}" if update.loss is not None else ""
            progress.update(
                task,
                description=f"{label}: epoch {update.epoch}/{update.epochs} {update.phase}",
                total=update.steps,
                completed=update.step,
                info=auc or loss,
            )

        yield show


def train_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the checkpoint to (replaced atomically).")],
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Model: tiny, default, default-moe or base (stateless); sequence (reads account history), "
            "sequence-flat, sequence-rows or tiny-sequence; large (a teacher for distill), small-sequence or "
            "micro-sequence (students).",
        ),
    ] = "default",
    data: DataOption = None,
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    split: SplitOption = "time",
    holdout_fraction: HoldoutFractionOption = 0.2,
    validation_fraction: ValidationFractionOption = 0.1,
    min_count: MinCountOption = 5,
    max_bad_fraction: BadOption = 0.01,
    events: Annotated[
        int | None, typer.Option("--events", min=500, help="Synthetic training events (default: the preset's).")
    ] = None,
    seed: SeedOption = 0,
    threads: TrainThreadsOption = None,
    max_epochs: Annotated[int | None, typer.Option("--max-epochs", min=1, help="Upper bound on epochs.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a DeepSeek-V3-architecture risk model and save it.

    Without --data it trains on the synthetic generator. With --data it trains on your labelled
    history: split by time (train on the earlier events, hold out the latest), featurization fitted
    on the training rows, two bounded passes over the file.
    """
    from inference.data import DataError
    from inference.model import PRESETS
    from inference.train import train, train_on_data

    if preset not in PRESETS:
        choices = ", ".join(PRESETS)
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {choices}", param_hint="--preset")
    check_split(split)
    if data is not None and events is not None:
        raise typer.BadParameter("--events is for synthetic data; with --data every row is used", param_hint="--events")
    event_mapping = _mapping(mapping, data)
    with training_progress(f"train {preset}", data) as show:
        try:
            if data is None:
                result = train(
                    out,
                    preset=preset,
                    events=events,
                    seed=seed,
                    threads=threads,
                    max_epochs=max_epochs,
                    on_progress=show,
                )
            else:
                result = train_on_data(
                    out,
                    data,
                    mapping=event_mapping,
                    label_field=label_field,
                    split=cast("SplitMode", split),
                    holdout_fraction=holdout_fraction,
                    validation_fraction=validation_fraction,
                    min_count=min_count,
                    max_bad_fraction=max_bad_fraction,
                    preset=preset,
                    seed=seed,
                    threads=threads,
                    max_epochs=max_epochs,
                    on_progress=show,
                )
        except (InferenceError, ValueError) as exc:
            kind = "data" if isinstance(exc, DataError) else "train"
            _err.print(f"[red]{kind} error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
    report_training(result, data, as_json)


def report_training(result: TrainResult, data: Path | None, as_json: bool) -> None:
    """Print what ``train`` (and ``distill``, ``prune``) saved: one line, or the record as JSON."""
    metadata = result.metadata
    record: dict[str, Any] = {
        "out": str(result.out_dir),
        "name": metadata.name,
        "version": metadata.version,
        "holdout_auc": round(result.holdout_auc, 6),
        "holdout_ap": round(result.holdout_ap, 6),
        "thresholds": {"review": metadata.thresholds.review, "decline": metadata.thresholds.decline},
        "epochs_run": metadata.training["epochs_run"],
        "seconds": round(result.seconds, 1),
    }
    if data is not None:
        record["data"] = metadata.training["data"]
        record["validation_auc"] = round(float(metadata.training["validation_auc"]), 6)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    if data is not None:
        _print_sets(record["data"])
    typer.echo(
        f"saved {record['name']} {record['version']} to {record['out']}: holdout AUC {record['holdout_auc']:.4f}, "
        f"AP {record['holdout_ap']:.4f}, {record['epochs_run']} epochs in {record['seconds']}s"
    )


def _print_sets(data: dict[str, Any]) -> None:
    source, bad = data["source"], data["bad_rows"]
    split = data["split"]
    title = (
        f"{source['file']} ({source['format']}): {data['rows_read']:,} rows, {bad['count']:,} bad; "
        f"split by {split['mode']}"
    )
    table = Table(title=title)
    for column in ("set", "rows", "fraud", "fraud rate", "from", "to"):
        table.add_column(column, justify="left" if column in ("set", "from", "to") else "right")
    for name, summary in data["sets"].items():
        if name == "unused" and not summary["rows"]:
            continue
        table.add_row(
            name,
            f"{summary['rows']:,}",
            f"{summary['fraud']:,}",
            f"{summary['fraud_rate']:.3%}",
            _minute(summary["first"]),
            _minute(summary["last"]),
        )
    Console().print(table)
    if bad["count"]:
        reasons = "; ".join(f"{reason} x{count}" for reason, count in list(bad["by_reason"].items())[:5])
        Console().print(f"bad rows: {reasons}; first at {', '.join(bad['first'][:3])}", highlight=False, markup=False)
    if split.get("holdout_from") or split["mode"] != "time":
        options = []
        if split.get("holdout_from"):
            options.append(f"--since {split['holdout_from']}")
        if split["mode"] != "time":
            options.append(f"--holdout-accounts {split['holdout_fraction']} --split-seed {split['seed']}")
        what = "holdout period starts " + split["holdout_from"] if split.get("holdout_from") else "holdout accounts"
        Console().print(
            f"{what} (evaluate {' '.join(options)})",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


def _minute(iso: str | None) -> str:
    """``2026-01-25T02:45:13Z`` -> ``2026-01-25 02:45`` (a table column, not a record)."""
    return "-" if iso is None else iso[:16].replace("T", " ")


def evaluate_command(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory to evaluate.")],
    data: DataOption = None,
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    since: SinceOption = None,
    holdout_accounts: HoldoutAccountsOption = None,
    split_seed: SplitSeedOption = 0,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Write roc.png, precision_recall.png, score_histogram.png here.")
    ] = None,
    alert_rates: Annotated[
        str, typer.Option("--alert-rates", help="Alert rates of the operating table, comma-separated.")
    ] = "0.1%,0.5%,1%,2%,5%",
    max_bad_fraction: BadOption = 0.01,
    events: Annotated[
        int, typer.Option("--events", min=100, help="Without --data: fresh synthetic events (1% fraud).")
    ] = 20_000,
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
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="A second checkpoint evaluated on the same events (its first variant): prints the lift over it.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """AUC, AP, operating table, fp32 agreement, bytes and throughput per quantization variant.

    On fresh synthetic events, or on your labelled --data (through --mapping). The operating table
    lists, for alert rates and for the model's review/decline thresholds: threshold, precision,
    recall by count and by value (fraud amount caught) and alerts per 10,000 events.
    """
    from inference.evaluate import evaluate

    rates = tuple(_fraction(item, "--alert-rates") or 0.0 for item in _split(alert_rates, "alert rate"))
    event_mapping = _mapping(mapping, data)
    chosen = _split(variants, "variant")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        task = progress.add_task("evaluate", total=None)

        def run(checkpoint: Path, names: list[str], plots_dir: Path | None, label: str) -> Any:
            return evaluate(
                checkpoint,
                events=events,
                seed=seed,
                data=data,
                mapping=event_mapping,
                label_field=label_field,
                since=_since(since),
                accounts=_holdout_accounts(holdout_accounts, split_seed, data),
                max_bad_fraction=max_bad_fraction,
                alert_rates=rates,
                variants=names,
                device=device,
                threads=threads,
                throughput_seconds=seconds,
                throughput_buckets=_ints(buckets),
                plots_dir=plots_dir,
                on_progress=lambda message: progress.update(task, description=f"{label}: {message}"),
            )

        try:
            report = run(model, chosen, plots, "evaluate")
            baseline_report = run(baseline, chosen[:1], None, "baseline") if baseline is not None else None
        except (InferenceError, ValueError) as exc:
            _err.print(f"[red]evaluate failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
    result = report.to_json()
    if baseline_report is not None:
        result["baseline"] = baseline_report.to_json()
        result["lift"] = _lift(result, result["baseline"], chosen[0])
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    where = result["source"].get("file") or "synthetic events"
    table = Table(
        title=f"{report.model} {report.version}: {where}, {report.events:,} events, {report.fraud_events:,} fraud"
    )
    for column in ("variant", "AUC", "AP", "max|diff|", "agree", "Linear B", "model B", "best ev/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in result["variants"].items():
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
    console.print(table)
    for name, row in result["variants"].items():
        console.print(_operating_table(f"operating table: {name}", row["operating_table"]))
    unknown = [f"{field} {info['events']:,} ({info['share']:.2%})" for field, info in result["unknown_values"].items()]
    console.print(f"events with values unknown to the model: {', '.join(unknown)}", highlight=False, markup=False)
    if result["bad_rows"]["count"]:
        console.print(f"bad rows skipped: {result['bad_rows']['count']:,}", highlight=False, markup=False)
    for path in result["plots"]:
        console.print(f"wrote {path}", highlight=False, markup=False)
    if "lift" in result:
        console.print(_lift_table(result))


def _recall_at(row: dict[str, Any], rate: float) -> float | None:
    for point in row["operating_table"]:
        if point["name"] == f"rate {rate:.1%}":
            return float(point["recall"]) if point["recall"] is not None else None
    return None


def _lift(result: dict[str, Any], baseline: dict[str, Any], variant: str) -> dict[str, Any]:
    """This model's first variant against the baseline's, on the same events: AUC, AP, recall at 1% and 2% alerts."""
    if (result["events"], result["fraud_events"]) != (baseline["events"], baseline["fraud_events"]):
        raise typer.BadParameter("the baseline was evaluated on other events", param_hint="--baseline")
    mine, theirs = result["variants"][variant], next(iter(baseline["variants"].values()))
    lift: dict[str, Any] = {"variant": variant, "baseline": f"{baseline['model']} {baseline['version']}"}
    pairs = {
        "auc": (mine["auc"], theirs["auc"]),
        "average_precision": (mine["average_precision"], theirs["average_precision"]),
        "recall_at_1%": (_recall_at(mine, 0.01), _recall_at(theirs, 0.01)),
        "recall_at_2%": (_recall_at(mine, 0.02), _recall_at(theirs, 0.02)),
    }
    for name, (value, base) in pairs.items():
        delta = None if value is None or base is None else value - base
        lift[name] = {"model": value, "baseline": base, "lift": delta}
    return lift


def _lift_table(result: dict[str, Any]) -> Table:
    lift = result["lift"]
    table = Table(title=f"{result['model']} {result['version']} against {lift['baseline']}, same events")
    for column in ("metric", "model", "baseline", "lift"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in ("auc", "average_precision", "recall_at_1%", "recall_at_2%"):
        row = lift[name]
        as_pct = name.startswith("recall")
        shown = [_pct(row[key]) if as_pct else ("-" if row[key] is None else f"{row[key]:.4f}") for key in row]
        if row["lift"] is not None:
            shown[2] = f"{row['lift'] * 100:+.1f} pts" if as_pct else f"{row['lift']:+.4f}"
        table.add_row(name.replace("_", " "), *shown)
    return table


def _operating_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("operating point", "threshold", "alerts/10k", "precision", "recall", "value recall"):
        table.add_column(column, justify="left" if column == "operating point" else "right")
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['threshold']:.4f}",
            f"{row['alerts_per_10k']:.1f}",
            _pct(row["precision"]),
            _pct(row["recall"]),
            _pct(row["value_recall"]),
        )
    return table


def thresholds_command(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint directory whose thresholds to set.")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data to choose the thresholds on.")],
    mapping: MappingOption = None,
    label_field: LabelOption = "is_fraud",
    since: SinceOption = None,
    holdout_accounts: HoldoutAccountsOption = None,
    split_seed: SplitSeedOption = 0,
    review_rate: Annotated[
        str | None, typer.Option("--review-rate", help="Share of events flagged for review (or decline), e.g. 2%.")
    ] = None,
    review_recall: Annotated[
        str | None, typer.Option("--review-recall", help="Share of fraud review must catch, e.g. 90%.")
    ] = None,
    decline_precision: Annotated[
        str | None, typer.Option("--decline-precision", help="Share of declines that must be fraud, e.g. 0.9.")
    ] = None,
    decline_rate: Annotated[
        str | None, typer.Option("--decline-rate", help="Share of events declined, e.g. 0.1%.")
    ] = None,
    min_decline_hits: Annotated[
        int, typer.Option("--min-decline-hits", min=1, help="Frauds a decline precision must rest on.")
    ] = 5,
    quantization: Annotated[
        str | None,
        typer.Option("--quantization", help="Variant to score with (default: the one served on --device)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda:N.")] = "cpu",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the new version to this directory instead of in place.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the new thresholds; write nothing.")] = False,
    max_bad_fraction: BadOption = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print the change as JSON.")] = False,
) -> None:
    """Set review/decline thresholds by policy on labelled data: a new model version, same weights.

    Review flags score >= review (declines included); decline, score >= decline. Give a review
    target (--review-rate or --review-recall) and/or a decline target (--decline-precision or
    --decline-rate); a band without a target keeps its threshold.
    """
    from inference.thresholds import ThresholdTargets, set_thresholds

    try:
        targets = ThresholdTargets(
            review_rate=_fraction(review_rate, "--review-rate"),
            review_recall=_fraction(review_recall, "--review-recall"),
            decline_precision=_fraction(decline_precision, "--decline-precision"),
            decline_rate=_fraction(decline_rate, "--decline-rate"),
            min_decline_hits=min_decline_hits,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    event_mapping = _mapping(mapping, data)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        task = progress.add_task("thresholds", total=None)
        try:
            change = set_thresholds(
                model,
                data,
                targets,
                mapping=event_mapping,
                label_field=label_field,
                since=_since(since),
                accounts=_holdout_accounts(holdout_accounts, split_seed, data),
                quantization=quantization,
                device=device,
                out_dir=out,
                dry_run=dry_run,
                max_bad_fraction=max_bad_fraction,
                on_progress=lambda message: progress.update(task, description=f"thresholds: {message}"),
            )
        except (InferenceError, ValueError, RuntimeError) as exc:
            _err.print(f"[red]thresholds failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(change.to_json(), indent=2))
        return
    console = Console()
    table = Table(title=f"{change.events:,} events, {change.fraud_events:,} fraud, scored with {change.quantization}")
    for column in ("band", "threshold", "alerts/10k", "precision", "recall", "value recall"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for band in ("review", "decline"):
        old, new = change.expected_old[band], change.expected_new[band]
        table.add_row(
            "review (score >= review)" if band == "review" else "decline",
            f"{old.threshold:.4f} -> {new.threshold:.4f}",
            f"{old.alerts_per_10k:.1f} -> {new.alerts_per_10k:.1f}",
            f"{_pct(old.precision)} -> {_pct(new.precision)}",
            f"{_pct(old.recall)} -> {_pct(new.recall)}",
            f"{_pct(old.value_recall)} -> {_pct(new.value_recall)}",
        )
    console.print(table)
    for note in change.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if change.written:
        console.print(
            f"wrote {change.model_dir}: version {change.old_version} -> {change.new_version}", highlight=False
        )
    elif dry_run:
        console.print(
            f"dry run: would write version {change.new_version}; nothing written", highlight=False, markup=False
        )


data_app = typer.Typer(
    help="Example data sets for trying train/evaluate/thresholds on your own format.", no_args_is_help=True
)


@data_app.command("example")
def data_example_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the data file and mapping.toml into.")],
    rows: Annotated[int, typer.Option("--rows", min=1, help="Transactions to write.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv (pipe-separated), jsonl (nested) or parquet.")] = "csv",
    fraud_rate: Annotated[float, typer.Option("--fraud-rate", min=0, max=1, help="Share of fraud.")] = 0.01,
    days: Annotated[int, typer.Option("--days", min=1, help="Days of history the transactions span.")] = 28,
) -> None:
    """Write a fictional bank's labelled export in its own format, with the mapping that reads it.

    Pipe-separated CSV (or nested JSON Lines, or Parquet) with epoch-second times, amounts in minor
    units, category names instead of MCCs, channel codes, its own behavioural signals and fake
    personal data (names, addresses, e-mails, phones, national ids) that the mapping drops.
    """
    from inference.example_data import EXAMPLE_FORMATS, write_example

    if fmt not in EXAMPLE_FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(EXAMPLE_FORMATS)}", param_hint="--format")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        progress.add_task(f"writing {rows:,} rows", total=None)
        try:
            files = write_example(
                out, rows=rows, seed=seed, fmt=cast("ExampleFormat", fmt), fraud_rate=fraud_rate, days=days
            )
        except (InferenceError, ValueError, ImportError) as exc:
            _err.print(f"[red]data example failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
    typer.echo(f"wrote {files.data} ({files.rows:,} rows, {files.fraud_rows:,} labelled fraud) and {files.mapping}")


@data_app.command("history")
def data_history_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write transactions.jsonl into.")],
    events: Annotated[int, typer.Option("--events", min=1, help="Transactions to write.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    fraud_rate: Annotated[float, typer.Option("--fraud-rate", min=0, max=0.5, help="Share of fraud events.")] = 0.01,
    days: Annotated[int, typer.Option("--days", min=2, help="Days of history the transactions span.")] = 28,
    accounts: Annotated[
        int | None, typer.Option("--accounts", min=1, help="Accounts (default: one per 40 transactions).")
    ] = None,
    features: Annotated[
        bool, typer.Option("--features/--no-features", help="Also write upstream behavioural features.")
    ] = False,
) -> None:
    """Write the history world: time-ordered labelled transactions where most fraud shows only in history.

    JSON Lines of TransactionEvent v1 with is_fraud and pattern, in event-time order. Without
    --features the events carry no upstream signals: velocity, habits and novelty are visible
    only to a model that keeps each account's history (train --data ... --preset sequence).
    """
    from inference.synthetic import write_jsonl
    from inference.synthetic_history import WorldSummary, generate_histories

    summary = WorldSummary()
    path = Path(out) / "transactions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_err) as progress:
        progress.add_task(f"writing {events:,} transactions", total=None)
        try:
            write_jsonl(
                path,
                generate_histories(
                    events,
                    seed=seed,
                    fraud_rate=fraud_rate,
                    days=days,
                    accounts=accounts,
                    upstream_features=features,
                    summary=summary,
                ),
            )
        except (InferenceError, ValueError, OSError) as exc:
            _err.print(f"[red]data history failed:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from exc
    patterns = ", ".join(f"{name} {count:,}" for name, count in sorted(summary.by_pattern.items()))
    typer.echo(
        f"wrote {path} ({summary.events:,} transactions of {summary.accounts:,} accounts, "
        f"{summary.fraud_events:,} fraud: {patterns})"
    )


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
            _err.print(f"[red]bench failed:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(code=2) from exc
    print_engine_bench(report, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the model commands to the main ``riskstream`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("thresholds")(thresholds_command)
    app.add_typer(data_app, name="data")
    app.command("bench-engine")(bench_engine_command)
    from inference.compress_cli import register as register_compression

    register_compression(app)
