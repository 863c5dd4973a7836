"""Task `augsbert` end to end on a tiny random model: the four stages, their artifacts, reuse on rerun, gold-only."""

from __future__ import annotations

import json

import pytest
from sentence_transformers import CrossEncoder, CrossEncoderTrainer, SentenceTransformerTrainer

from nlpexp import NlpexpError
from nlpexp.pipeline import build_task, run
from nlpexp.task.augsbert import task as augsbert_task

SMOKE = ("task=augsbert", "model=tiny_bert", "debug=smoke", "logger=none", "task.gold_size=32")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, data_root):
    from nlpexp.config import compose

    run_dir = tmp_path_factory.mktemp("augsbert")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        metrics = run(compose([f"paths.output_dir={run_dir}", *SMOKE]))
    return run_dir, metrics


def test_each_stage_leaves_its_artifact(first_run):
    run_dir, metrics = first_run
    silver = _jsonl(run_dir / "silver.jsonl")
    candidates = _jsonl(run_dir / "candidates.jsonl")
    assert [(r["sentence1"], r["sentence2"]) for r in silver] == [(r["sentence1"], r["sentence2"]) for r in candidates]
    assert all(0.0 <= r["score"] <= 1.0 for r in silver)
    assert metrics["train/gold_pairs"] == 32 and metrics["train/silver_pairs"] == len(silver) > 0
    assert metrics["train/examples"] == 32 + len(silver)
    cross_encoder = CrossEncoder(str(run_dir / "cross_encoder"), local_files_only=True)
    assert cross_encoder.predict([("A man plays.", "A man plays music.")]).shape == (1,)
    assert "val/cross_encoder_spearman" in metrics and "val/spearman_cosine" in metrics
    assert (run_dir / "best_model" / "modules.json").is_file()
    assert set(json.loads((run_dir / "stages.json").read_text())) == {"cross_encoder", "candidates", "silver",
                                                                      "bi_encoder"}


def test_rerun_skips_the_stages_already_done(first_run, compose_run, monkeypatch):
    run_dir, metrics = first_run

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(CrossEncoderTrainer, "train", refuse)
    monkeypatch.setattr(SentenceTransformerTrainer, "train", refuse)
    monkeypatch.setattr(CrossEncoder, "predict", refuse)
    again = run(compose_run(*SMOKE, run_dir=run_dir))
    for key in ("val/spearman_cosine", "val/cross_encoder_spearman", "train/silver_pairs"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)


def test_rerun_with_other_settings_is_refused(first_run, compose_run):
    run_dir, _ = first_run
    with pytest.raises(NlpexpError, match="changed: gold_size"):
        run(compose_run(*SMOKE, "task.gold_size=31", run_dir=run_dir))


def test_an_interrupted_run_resumes_after_its_last_finished_stage(compose_run, tmp_path, monkeypatch):
    """A crash while writing silver.jsonl leaves stages 1-2 done; the rerun reuses them and does 3 and 4."""
    run_dir = tmp_path / "run"
    write = augsbert_task.write_jsonl_atomic

    def crash_on_silver(path, rows):
        if path.name == "silver.jsonl":
            raise RuntimeError("crash")
        write(path, rows)

    with monkeypatch.context() as patch:
        patch.setattr(augsbert_task, "write_jsonl_atomic", crash_on_silver)
        with pytest.raises(RuntimeError, match="crash"):
            run(compose_run(*SMOKE, run_dir=run_dir))
    assert (run_dir / "cross_encoder").is_dir() and (run_dir / "candidates.jsonl").is_file()
    assert not (run_dir / "silver.jsonl").exists()
    monkeypatch.setattr(CrossEncoderTrainer, "train", lambda *a, **k: pytest.fail("stage 1 again"))
    metrics = run(compose_run(*SMOKE, run_dir=run_dir))
    assert metrics["train/silver_pairs"] == len(_jsonl(run_dir / "candidates.jsonl")) > 0
    assert "val/cross_encoder_spearman" in metrics


def test_gold_only_skips_the_cross_encoder(compose_run, tmp_path):
    metrics = run(compose_run(*SMOKE, "task.gold_only=true"))
    assert metrics["train/silver_pairs"] == 0 and metrics["train/examples"] == 32
    assert not (tmp_path / "run" / "cross_encoder").exists() and not (tmp_path / "run" / "silver.jsonl").exists()
    assert "val/cross_encoder_spearman" not in metrics


@pytest.mark.parametrize("sampling", ["random", "nearest"])
def test_sampled_candidates_are_new_distinct_pairs(compose_run, tmp_path, sampling):
    task = build_task(compose_run(*SMOKE, f"task.pair_sampling={sampling}", "task.pairs_per_sentence=2"))
    task.setup()
    candidates = task._candidates()
    assert candidates == [(r["sentence1"], r["sentence2"]) for r in _jsonl(tmp_path / "run" / "candidates.jsonl")]
    assert candidates and all(a != b for a, b in candidates)
    assert len({frozenset(pair) for pair in candidates}) == len(candidates)
    gold = set(zip(task.gold["sentence1"], task.gold["sentence2"], strict=True))
    assert not gold & set(candidates)
    sentences = set(task.unlabelled["premise"]) | set(task.unlabelled["hypothesis"])
    assert {text for pair in candidates for text in pair} <= sentences


def test_gold_size_must_leave_rows_for_silver(compose_run):
    with pytest.raises(NlpexpError, match="gold_only=true"):
        run(compose_run(*SMOKE, "task.gold_size=64"))


def test_the_bi_encoder_needs_a_scored_pair_loss(compose_run):
    with pytest.raises(NlpexpError, match="loss=cosine"):
        run(compose_run(*SMOKE, "loss=mnrl"))


def test_the_papers_setting_gold_from_scored_sts_pairs(compose_run, tmp_path, data_root):
    """data=stsb: gold = the first rows with their scores / 5 (the cross-encoder's labels), silver = nearest pairs
    of the other rows' sentences, none of their scores read."""
    import gzip

    task = build_task(compose_run("task=augsbert", "model=tiny_bert", "debug=smoke", "logger=none", "data=stsb",
                                  "task.gold_size=16", "task.pair_sampling=nearest", "task.pairs_per_sentence=1"))
    task.setup()
    rows = [json.loads(line) for line in gzip.open(data_root / "stsb" / "train.jsonl.gz", "rt")]
    assert list(task.gold["score"]) == pytest.approx([r["score"] / 5 for r in rows[:16]])
    assert task.unlabelled.column_names == ["sentence1", "sentence2"]
    candidates = task._candidates()
    assert candidates and {t for pair in candidates for t in pair} <= {r[c] for r in rows[16:]
                                                                       for c in ("sentence1", "sentence2")}
    head = {id(p) for p in task._cross_encoder()[0].model.classifier.parameters()}
    assert head and (tmp_path / "run" / "cross_encoder").is_dir()


def test_every_augsbert_preset_pairs_with_its_gold_only_twin(compose_run):
    """A bench row's gain is read against its twin: same data, gold slice, loss and settings, without silver."""
    from omegaconf import OmegaConf

    for preset, twin_preset in (("augsbert_sts", "augsbert_sts_gold_only"),
                                ("augsbert_korsts", "augsbert_korsts_gold_only"),
                                ("augsbert_reference", "augsbert_gold_only")):
        full, twin = (OmegaConf.to_container(compose_run(f"experiment={p}")) for p in (preset, twin_preset))
        assert twin["task"].pop("gold_only") and not full["task"].pop("gold_only")
        assert full == twin
