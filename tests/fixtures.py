"""A tiny data root in the mirror's layout, generated here so that tests need no real datasets."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

NLI_LABELS = ("entailment", "neutral", "contradiction")
_SUBJECTS = ["A man", "A woman", "Two kids", "A dog", "The chef", "A cyclist", "An old man", "A girl"]
_ACTIONS = ["is playing guitar", "runs in the park", "is cooking pasta", "sleeps on a couch",
            "rides a bike", "reads a book", "swims in a lake", "paints a wall"]
_KO = ["한 남자가 기타를 치고 있다.", "여자가 공원에서 달린다.", "요리사가 파스타를 만든다.", "개가 소파에서 잔다."]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)}."


def _any_sentence(rng: random.Random, korean: bool) -> str:
    return rng.choice(_KO) if korean else _sentence(rng)


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def nli_rows(rng: random.Random, n: int) -> list[dict]:
    return [{"premise": _sentence(rng), "hypothesis": _sentence(rng), "label": NLI_LABELS[i % 3]} for i in range(n)]


def sts_rows(rng: random.Random, n: int) -> list[dict]:
    return [{"sentence1": _sentence(rng), "sentence2": _sentence(rng), "score": round(rng.uniform(0, 5), 2)}
            for _ in range(n)]


def make_data_root(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for name in ("snli", "kornli"):
        _write(root / name / "test.jsonl.gz", nli_rows(rng, 48))
        _write(root / name / "validation.jsonl.gz", nli_rows(rng, 24))
    _write(root / "mnli" / "validation.jsonl.gz", nli_rows(rng, 48))
    for name in ("stsb", "korsts"):
        _write(root / name / "train.jsonl.gz", sts_rows(rng, 48))
        _write(root / name / "validation.jsonl.gz", sts_rows(rng, 24))
    for name, texts in (("imdb", None), ("nsmc", _KO)):
        for split in ("train", "test"):
            rows = [{"text": rng.choice(texts) if texts else _sentence(rng), "label": i % 2} for i in range(40)]
            if name == "nsmc":
                rows[3]["text"] = ""  # the real NSMC has empty reviews too
            _write(root / name / f"{split}.jsonl.gz", rows)
    for name, split_names in (("dialogsum", ("train", "validation", "test")), ("ko_dialogsum", ("validation",))):
        for split in split_names:
            rows = []
            korean = name == "ko_dialogsum"
            for i in range(24):
                turns = [f"#Person{1 + t % 2}#: {_any_sentence(rng, korean)}" for t in range(4)]
                rows.append({"id": f"{split}_{i}", "dialogue": "\n".join(turns), "summary": _any_sentence(rng, korean),
                             "topic": "daily"})
                if name == "dialogsum" and split == "test":
                    rows[-1].update(summary2=_sentence(rng), summary3=_sentence(rng))
            _write(root / name / f"{split}.jsonl.gz", rows)
    return root


def read_hparams(log_dir: Path) -> dict[str, float | str | bool]:
    """The hparams a run recorded (TensorBoard's hparams plugin) in one event folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams").get("_hparams_/session_start_info")
    if content is None:
        return {}
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in hparams.items()}
