"""PNG plots of an evaluation: ROC curve, precision-recall curve, score histogram by label.

matplotlib is optional (the ``plots`` extra, also in ``dev`` and ``bench``): it is imported only
here, and :func:`require_matplotlib` says how to install it. Figures are drawn on matplotlib's
object API with the Agg canvas, never through ``pyplot``'s global state, so plotting is safe in any
process and needs no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from inference.errors import InferenceError
from inference.metrics import average_precision, precision_recall_curve, roc_auc, roc_curve

PLOT_FILES: Final = ("roc.png", "precision_recall.png", "score_histogram.png")


def require_matplotlib() -> None:
    """Raise ``InferenceError`` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InferenceError("plots need matplotlib: pip install 'riskstream[plots]'") from None


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def write_plots(
    out_dir: Path, labels: npt.NDArray[np.integer], scores_by_variant: dict[str, npt.NDArray[np.floating]]
) -> list[Path]:
    """Write :data:`PLOT_FILES` into ``out_dir``; returns their paths."""
    require_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in PLOT_FILES]

    figure = _figure()
    axes = figure.add_subplot()
    for variant, scores in scores_by_variant.items():
        fpr, tpr = roc_curve(labels, scores)
        axes.plot(fpr, tpr, label=f"{variant} (AUC {roc_auc(labels, scores):.4f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC curve")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.savefig(paths[0])

    figure = _figure()
    axes = figure.add_subplot()
    base_rate = float(np.mean(labels))
    for variant, scores in scores_by_variant.items():
        recall, precision = precision_recall_curve(labels, scores)
        axes.step(recall, precision, where="post", label=f"{variant} (AP {average_precision(labels, scores):.4f})")
    axes.axhline(base_rate, linestyle=":", color="grey", linewidth=1, label=f"fraud rate {base_rate:.2%}")
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    figure.savefig(paths[1])

    figure = _figure(6.0, 2.2 + 1.8 * len(scores_by_variant))
    bins = np.linspace(0.0, 1.0, 51)
    fraud = np.asarray(labels).astype(bool)
    for row, (variant, scores) in enumerate(scores_by_variant.items(), start=1):
        axes = figure.add_subplot(len(scores_by_variant), 1, row)
        axes.hist(scores[~fraud], bins=bins, alpha=0.6, label=f"legitimate ({int((~fraud).sum()):,})")
        axes.hist(scores[fraud], bins=bins, alpha=0.6, label=f"fraud ({int(fraud.sum()):,})")
        axes.set_yscale("log")
        axes.set(ylabel="events", title=f"Scores by label: {variant}")
        axes.legend(loc="upper center")
    axes.set_xlabel("score")
    figure.tight_layout()
    figure.savefig(paths[2])
    return paths
