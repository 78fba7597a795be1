"""The accuracy-versus-speed chart: each model's INT8 files per engine, and the dense references measured in the
same run, as the task's score on the card's validation against items/s at batch 16.

Everything comes from the model cards: the scores from compression (``int8_<engine>_graph_<metric>``,
``teacher_<metric>``), the speeds from ``oberta bench engines --record-in-card`` (an interleaved run that includes
the dense INT8 peers). The peers' own INT8 accuracy is not measured: they are drawn at the dense FP32 teacher's
score, hollow, and the legend says so. Speeds of different cards come from different runs; each point's label
gives its ratio to the best dense INT8 peer of its own run, which is what compares across runs. Cards whose
validations were made differently (the card's ``build.validation.method``) get panels of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.runtime.card import ModelCard

METRICS = {
    "text-classification": "accuracy",
    "token-classification": "f1",
    "question-answering": "f1",
    "sentence-embedding": "sts_spearman",
}
"""The score each task is drawn by (a key of its cards' metrics)."""
BATCH = 16
ENGINES = {"deepsparse": "sparse-int8 deepsparse", "onnxruntime": "sparse-int8 onnxruntime"}
REFERENCES = ("dense-fp32 onnxruntime", "dense-int8 ort-optimized", "dense-int8 ort-fused", "dense-int8 openvino")


@dataclass(frozen=True)
class Point:
    """One drawn point: what it is, its items/s at batch 16, its ratio to the run's best dense INT8 peer, its score,
    and whether that score was measured on this file (False: the dense teacher's score stands in)."""

    model: str
    case: str
    items_per_second: float
    vs_best_dense_int8: float | None
    score: float
    measured: bool


def card_points(name: str, card: ModelCard) -> list[Point]:
    """The points of one card; empty when it has no recorded speed or no score of its task's metric."""
    speed: dict[str, Any] = card.metrics.get("speed") or {}
    items, ratios = speed.get("items_per_second", {}), speed.get("vs_best_dense_int8", {})
    metric = METRICS[card.task]
    teacher = card.metrics.get(f"teacher_{metric}")
    points = []
    for engine, case in ENGINES.items():
        score = card.metrics.get(f"int8_{engine}_graph_{metric}")
        key = f"{case} batch {BATCH}"
        if score is not None and key in items:
            points.append(Point(name, case, items[key], ratios.get(key), float(score), True))
    if teacher is not None:
        for case in REFERENCES:
            key = f"{case} batch {BATCH}"
            if key in items:
                points.append(Point(name, case, items[key], ratios.get(key), float(teacher), False))
    return points


def panel(card: ModelCard) -> tuple[str, str]:
    """The task and how its validation was made: scores on different validations share no axis."""
    validation = card.build.get("validation") or {}
    return card.task, str(validation.get("method", "not recorded"))


def draw(cards: dict[str, ModelCard], path: Path, command: str) -> list[Point]:
    """One panel per task and validation method, a dense reference that several cards hold from one run drawn once
    (named by the first); returns the points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({panel(card) for card in cards.values()})
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.5), squeeze=False)
    drawn: list[Point] = []
    for axis, (task, method) in zip(axes[0], panels, strict=True):
        references: set[tuple[str, float, float]] = set()  # cards measured in one run share their references
        for name, card in cards.items():
            if panel(card) != (task, method):
                continue
            for index, point in enumerate(card_points(name, card)):
                reference = (point.case, point.items_per_second, point.score)
                if not point.measured and reference in references:
                    continue
                references.add(reference)
                drawn.append(point)
                marker = "o" if "deepsparse" in point.case else "s" if "onnxruntime" in point.case else "^"
                face = None if point.measured else "none"
                axis.scatter(point.items_per_second, point.score, marker=marker, facecolors=face,
                             edgecolors="black" if point.measured else "grey", s=40)
                ratio = "" if point.vs_best_dense_int8 is None else f" ({point.vs_best_dense_int8:.2f}x)"
                axis.annotate(f"{name}: {point.case}{ratio}", (point.items_per_second, point.score), fontsize=6,
                              xytext=(4, 3 - 9 * (index % 4)), textcoords="offset points")  # stagger neighbours
        axis.set_xlabel(f"items/s at batch {BATCH}, sequence 128 (ratio to the run's best dense INT8 peer)")
        axis.set_ylabel(f"{METRICS[task]} on the card's validation")
        axis.set_title(f"{task}, validation split: {method}")
        axis.margins(x=0.25, y=0.1)
    figure.suptitle(f"{command}\nfilled: INT8 files as shipped, scored; hollow: dense references drawn at the dense "
                    "FP32 teacher's score (their own INT8 score not measured)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return drawn
