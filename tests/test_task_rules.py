"""A task's keys are read from its constructor (issue 27): nlpexp's own tasks as a task of one's own, a DataSpec or
GenerationSettings parameter checked as the node it is, and nothing imported that the allow-list does not vouch
for. (The messages are pinned in tests/test_bad_settings.py; that reading a task imports no training library, in
tests/test_bad_inputs.py.)"""

from __future__ import annotations

from typing import Annotated

from nlpexp import schema
from nlpexp.derived import group_of
from nlpexp.rules import Int
from nlpexp.task import imported
from nlpexp.task.sts import IN_BATCH_NEGATIVE_LOSSES, SCORED_PAIR_LOSSES, StsScoredTask

SBERT_NLI = "nlpexp.task.sbert_nli.SbertNliTask"


class RankedTask(StsScoredTask):
    def __init__(self, *, depth: Annotated[int, Int(1)] = 2, **kwargs):
        super().__init__(**kwargs)


def test_a_task_s_keys_are_its_constructor_s_a_base_s_first():
    group = schema.TASK.groups[SBERT_NLI]
    assert list(group.fields) == ["monitor", "cache_dir", "sts", "batch_sampler", "trained_layers", "head_lr"]
    assert group.required == ("monitor", "sts") and not group.open
    assert group.fields["sts"] is schema.DATA  # walked as a data node: task.sts.max_eval_samples is checked
    summarization = schema.TASK.groups["nlpexp.task.summarization.SummarizationTask"]
    assert summarization.fields["generation"] is schema.GENERATION and "generation" in summarization.required
    assert {str(rule) for key, rule in schema.TASK.groups["nlpexp.task.augsbert.AugSbertTask"].fields.items()
            if key == "silver_threshold"} == {"a number in [0, 1] or null"}


def test_a_task_of_one_s_own_is_read_the_same_way(monkeypatch):
    monkeypatch.setenv("NLPEXP_TRUST_TARGETS", f"{__name__}.*")
    from nlpexp import components

    for cache in (components.allowlist, components._added):
        cache.cache_clear()
    try:
        group = group_of(schema.TASK, {"_target_": f"{__name__}.RankedTask"})
    finally:
        monkeypatch.undo()
        for cache in (components.allowlist, components._added):
            cache.cache_clear()
    assert list(group.fields) == ["monitor", "cache_dir", "sts", "batch_sampler", "depth"]
    assert group.fields["sts"] is schema.DATA and str(group.fields["depth"]) == "a positive integer"
    assert group.required == ("monitor", "sts") and not group.open


def test_a_task_nobody_trusts_is_not_imported_to_read_its_keys(tmp_path, monkeypatch):
    (tmp_path / "noisy_task.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Task: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert group_of(schema.TASK, {"_target_": "noisy_task.Task"}) is schema.TASK.other
    assert "noisy_task.Task" not in schema.TASK.groups
    assert not (tmp_path / "imported").exists()


def test_the_loss_families_name_sentence_transformers_classes():
    from sentence_transformers.sentence_transformer import losses

    assert losses.CachedMultipleNegativesRankingLoss in imported(IN_BATCH_NEGATIVE_LOSSES)
    assert imported(SCORED_PAIR_LOSSES) == (losses.CosineSimilarityLoss, losses.CoSENTLoss, losses.AnglELoss)
    assert imported((losses.CoSENTLoss,)) == (losses.CoSENTLoss,)  # a class is taken as it is
