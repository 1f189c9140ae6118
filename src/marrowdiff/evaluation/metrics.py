"""Metrics as pure functions: predictions -> metrics, confidence intervals, figures, pages."""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from marrowdiff.classes import Vocabulary
from marrowdiff.images import jpeg_data_uri


def adjacent_stage_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], vocabulary: Vocabulary
) -> float:
    """Share of cells predicted as their class or a neighbouring stage of the same lineage
    (Matek et al. 2021's "tolerant" accuracy)."""
    ok = [vocabulary.adjacent(classes[t], classes[p]) for t, p in zip(y_true, y_pred, strict=True)]
    return float(np.mean(ok)) if ok else float("nan")


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], vocabulary: Vocabulary
) -> dict:
    """The paper's metrics (weighted averages) plus macro-F1, balanced and adjacent accuracy."""
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    pw, rw, fw, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="weighted", zero_division=0
    )
    present = sorted(set(np.asarray(y_true).tolist()))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_weighted": float(pw),
        "recall_weighted": float(rw),
        "f1_weighted": float(fw),
        "f1_macro": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "adjacent_stage_accuracy": adjacent_stage_accuracy(y_true, y_pred, classes, vocabulary),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {
            "classes": list(classes),
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }


HEADLINE = ("accuracy", "f1_weighted", "f1_macro", "balanced_accuracy", "adjacent_stage_accuracy")


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    vocabulary: Vocabulary,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (resampling cells) for the headline metrics."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    adjacent = np.array(
        [vocabulary.adjacent(classes[t], classes[p]) for t, p in zip(y_true, y_pred, strict=True)]
    )
    seen = np.concatenate([y_true, y_pred]).astype(np.int64)
    n_classes = max(len(classes), int(seen.max(initial=-1)) + 1)
    draws = {k: [] for k in HEADLINE}
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        figures = _headline_of(y_true[idx], y_pred[idx], n_classes)
        for key, value in zip(HEADLINE, (*figures, adjacent[idx].mean()), strict=True):
            draws[key].append(value)
    tail = (1 - level) / 2 * 100
    return {
        k: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))]
        for k, v in draws.items()
    }


def _headline_of(t: np.ndarray, p: np.ndarray, n_classes: int) -> tuple[float, ...]:
    """Accuracy, weighted F1, macro-F1 (over the classes present) and balanced accuracy from
    one confusion matrix: what scikit-learn's functions give (zero_division=0), in one pass
    instead of three, for the bootstrap's thousand resamples."""
    cm = np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)
    hits, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    f1 = np.divide(
        2 * hits, support + predicted, out=np.zeros(n_classes), where=support + predicted > 0
    )
    present = support > 0
    recall = hits[present] / support[present]
    return (
        hits.sum() / len(t),
        (f1 * support).sum() / support.sum(),
        f1[present].mean(),
        recall.mean(),
    )


def confusion_figure(matrix: np.ndarray, names: list[str], title: str = ""):
    """A confusion matrix figure (counts, rows = truth), as the paper's Fig 4B."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    fig = Figure(figsize=(1.0 + 0.55 * len(names), 0.8 + 0.5 * len(names)), dpi=110)
    ax = fig.add_subplot()
    rows = matrix.sum(1, keepdims=True)
    ax.imshow(matrix / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > 0.6 * max(rows[i, 0], 1) else "black",
                )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _bar_class(k: int, truth: int, predicted: int) -> str:
    return "t" if k == truth else "p" if k == predicted else ""


# Cards on the misclassified page, the most confident mistakes first: a page and the images it
# decodes stay bounded however large the split (a poor model on 30,000 cells errs 27,000 times).
MISCLASSIFIED_SHOWN = 1000


def shown_mistakes(
    y_true: np.ndarray, proba: np.ndarray, limit: int = MISCLASSIFIED_SHOWN
) -> np.ndarray:
    """Indices of the misclassified cells, the most confident mistakes first, at most `limit`."""
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:limit]


def misclassified_html(
    paths: list[str],
    images: Mapping[str, np.ndarray],
    y_true: np.ndarray,
    proba: np.ndarray,
    names: list[str],
    title: str,
    limit: int = MISCLASSIFIED_SHOWN,
) -> str:
    """A self-contained page of the misclassified cells with their softmax bars (Fig 6), the
    `limit` most confident ones. `images` needs the images of those paths only
    (`shown_mistakes`)."""
    pred = proba.argmax(1)
    n_wrong = int((pred != y_true).sum())
    wrong = shown_mistakes(y_true, proba, limit)
    shown = f"; the {len(wrong)} most confident are shown" if len(wrong) < n_wrong else ""
    cards = []
    for i in wrong:
        bars = "".join(
            f'<div class="bar"><span class="{_bar_class(k, y_true[i], pred[i])}"'
            f' style="width:{100 * proba[i, k]:.0f}%"></span><em>{html.escape(names[k])} '
            f"{proba[i, k]:.2f}</em></div>"
            for k in np.argsort(-proba[i])[:4]
        )
        cards.append(
            f'<div class="card"><img src="{jpeg_data_uri(images[paths[i]], side=96)}" alt="">'
            f"<p><b>{html.escape(paths[i])}</b><br>true: {html.escape(names[y_true[i]])}<br>"
            f"predicted: {html.escape(names[pred[i]])}</p>{bars}</div>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:20px}}.card{{display:inline-block;
width:230px;vertical-align:top;margin:6px;padding:8px;border:1px solid #ccc;border-radius:6px}}
.card img{{width:96px;height:96px;float:left;margin-right:8px}}.card p{{margin:0;font-size:12px;
min-height:96px}}.bar{{position:relative;height:16px;background:#eee;margin:3px 0;clear:both}}
.bar span{{position:absolute;left:0;top:0;bottom:0;background:#9ab}}.bar span.t{{background:#4a4}}
.bar span.p{{background:#c44}}.bar em{{position:relative;font-size:11px;font-style:normal;
padding-left:3px}}</style></head><body><h1>{html.escape(title)}</h1>
<p>{n_wrong} of {len(y_true)} cells misclassified{shown}, most confident first. Bars: softmax
probability of the top four classes; green = true class, red = predicted.</p>
{"".join(cards) or "<p>None.</p>"}</body></html>"""


def invariance_summary(
    names: list[str], preds: np.ndarray, y_true: np.ndarray, classes: list[str]
) -> dict:
    """Share of cells whose prediction under each transform equals the untransformed one."""
    same = preds == preds[0]  # (T, N)
    return {
        "transforms": names,
        "overall": same.mean(1).tolist(),
        "per_class": {
            c: same[:, y_true == i].mean(1).tolist()
            for i, c in enumerate(classes)
            if (y_true == i).any()
        },
    }


def invariance_figure(summary: dict, names: dict[str, str]):
    """Classes x transforms heat map of prediction stability (the paper's Fig 5 as numbers)."""
    from matplotlib.figure import Figure

    rows = list(summary["per_class"])
    grid = np.array([summary["per_class"][c] for c in rows] + [summary["overall"]])
    labels = [names.get(c, c) for c in rows] + ["all cells"]
    fig = Figure(figsize=(2 + 0.42 * grid.shape[1], 1 + 0.36 * len(labels)), dpi=110)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(grid.shape[1]), summary["transforms"], rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("prediction unchanged under rotation/flip and crop shift (%)", fontsize=9)
    fig.tight_layout()
    return fig
