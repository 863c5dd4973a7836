"""Scores and error analysis of a classifier's logits: accuracy, macro-F1, confusion matrix, misclassified rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nlpexp.io import write_json_atomic, write_jsonl_atomic


def classification_scores(gold: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    predicted = np.asarray(logits).argmax(axis=-1)
    return {"accuracy": float((predicted == gold).mean()),
            "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0))}


def write_confusion_matrix(folder: Path, gold: np.ndarray, logits: np.ndarray, label_names: Sequence[str],
                           split: str) -> np.ndarray:
    """confusion_matrix.json and .png in `folder`: rows are gold labels, columns predicted ones."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    matrix = confusion_matrix(gold, np.asarray(logits).argmax(axis=-1), labels=list(range(len(label_names))))
    write_json_atomic(folder / "confusion_matrix.json",
                      {"split": split, "labels": list(label_names), "rows": "gold", "columns": "predicted",
                       "matrix": matrix.tolist()})
    # scikit-learn draws it onto a figure of our own on the Agg canvas: no GUI backend, no pyplot figure left open.
    size = 2.5 + 0.6 * len(label_names)
    figure = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ConfusionMatrixDisplay(matrix, display_labels=list(label_names)).plot(ax=axes, cmap="Blues", values_format="d")
    axes.set(xlabel="predicted", ylabel="gold", title=f"confusion matrix ({split}, n={int(matrix.sum())})")
    figure.savefig(folder / "confusion_matrix.png", dpi=120)
    return matrix


def write_misclassified(path: Path, texts: Sequence[str], gold: np.ndarray, logits: np.ndarray,
                        label_names: Sequence[str]) -> int:
    """One JSON line per wrong prediction (index, text, gold, predicted, confidence), most confident first."""
    from scipy.special import softmax

    probabilities = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    predicted = probabilities.argmax(axis=-1)
    confidence = probabilities.max(axis=-1)
    wrong = np.flatnonzero(predicted != gold)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return write_jsonl_atomic(path, ({"index": int(i), "text": texts[i], "gold": label_names[gold[i]],
                                      "predicted": label_names[predicted[i]],
                                      "confidence": round(float(confidence[i]), 6)} for i in wrong))
