"""The best model as an MLflow model of its own flavor: `mlflow.pyfunc.load_model` and `mlflow models serve` work
on what a run logs under `best_model/`, and a registry version can point at it (nlpexp.registry_mlflow)."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

# the MLmodel's data folder of each flavor nlpexp writes: where the model's own files are
DATA_DIRS = ("model.sentence_transformer",)


def save(model_dir: Path, target: Path) -> bool:
    """Write `model_dir` as an MLflow model in `target` (absent); False when nlpexp has no flavor for it."""
    if (model_dir / "modules.json").is_file():
        _sentence_transformers(model_dir, target)
        return True
    return False


def model_folder(mlflow_model: Path) -> Path:
    """The model's own files inside a downloaded MLflow model (what nlpexp loads), or the folder itself."""
    for name in DATA_DIRS:
        if (mlflow_model / name).is_dir():
            return mlflow_model / name
    return mlflow_model


def _sentence_transformers(model_dir: Path, target: Path) -> None:
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    # Pinned to what trained it: no requirement inference (it would load the model again in a subprocess).
    mlflow.sentence_transformers.save_model(model, str(target), pip_requirements=_pins(
        "mlflow", "sentence-transformers", "transformers", "torch"))
    data = target / DATA_DIRS[0]
    for extra in model_dir.iterdir():  # the task's own files (e.g. sbert_nli's nli_head): nlpexp reloads them
        if not (data / extra.name).exists():
            (shutil.copytree if extra.is_dir() else shutil.copy2)(extra, data / extra.name)


def _pins(*packages: str) -> list[str]:
    return [f"{p}=={metadata.version(p)}" for p in packages]
