"""The AugSBERT stages' artifacts: their ledger (stages.json), atomic writes, the gold + silver set."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from nlpexp import NlpexpError, is_main_process
from nlpexp.io import write_json_atomic


def gold_and_silver(gold, silver: list[dict], threshold: float | None):
    """Gold pairs first, then the silver ones (scores cut to 0/1 at `threshold` when it is set)."""
    import datasets

    if not silver:
        return gold
    scores = [row["score"] if threshold is None else float(row["score"] >= threshold) for row in silver]
    silver_set = datasets.Dataset.from_dict({"sentence1": [row["sentence1"] for row in silver],
                                             "sentence2": [row["sentence2"] for row in silver], "score": scores})
    return datasets.concatenate_datasets([gold, silver_set.cast(gold.features)])


class StageLedger:
    """stages.json in the run dir: per stage, the settings its artifact was built with (and its metrics)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "stages.json"
        self.records: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def done(self, stage: str, artifact: Path, settings: dict) -> bool:
        """True when `artifact` exists and was built with `settings`; refuses one built with others."""
        record = self.records.get(stage)
        if record is None or not artifact.exists():
            return False
        if record["settings"] != settings:
            changed = sorted(k for k in settings.keys() | record["settings"].keys()
                             if settings.get(k) != record["settings"].get(k))
            raise NlpexpError(f"{artifact} was built with other settings (changed: {', '.join(changed)}); use a new "
                              f"hydra.run.dir, or delete it and the later stages' artifacts to rebuild them")
        return True

    def record(self, stage: str, settings: dict, metrics: Mapping[str, float] | None = None) -> None:
        self.records[stage] = {"settings": settings, "metrics": dict(metrics or {})}
        if is_main_process():
            write_json_atomic(self.path, self.records)

    def metrics(self, stage: str) -> dict[str, float]:
        return dict(self.records.get(stage, {}).get("metrics", {}))


def save_folder_atomically(model, folder: Path) -> None:
    """A half-written folder never looks like a finished stage: save beside it, then rename."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save(str(staging))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plain(settings: dict) -> dict:
    """JSON round trip, so that settings compare equal to what stages.json holds."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))
