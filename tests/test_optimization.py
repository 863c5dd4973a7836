"""Parameter groups: what a task adds untrained learns at optimizer.head_lr, everything else at optimizer.lr."""

from __future__ import annotations

import pytest
import torch

from nlpexp import NlpexpError
from nlpexp.model import ModelSpec
from nlpexp.pipeline import build_task, run
from nlpexp.trainer.build import with_head_lr

TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64}


def _lr_of(optimizer) -> dict[int, float]:
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_the_classification_head_learns_at_head_lr(compose_run):
    task = build_task(compose_run("task=classification", "data=imdb", "model=tiny_bert", "debug=smoke",
                                  "optimizer.lr=1e-4", "optimizer.head_lr=3e-3"))
    task.setup()
    lrs = _lr_of(task.trainer.create_optimizer())
    head = {id(p) for p in task.model.classifier.parameters()}
    assert head and all(lrs[i] == 3e-3 for i in head)
    encoder = [id(p) for p in task.model.encoder.parameters()]
    assert encoder and all(lrs[i] == 1e-4 for i in encoder)
    assert len(lrs) == sum(1 for p in task.model.parameters() if p.requires_grad)  # each parameter once
    assert task.trainer.optimizer.param_groups[0]["lr"] == 1e-4  # the logged rate stays the encoder's


def test_head_lr_null_trains_everything_at_lr(compose_run):
    task = build_task(compose_run("task=classification", "data=imdb", "model=tiny_bert", "debug=smoke",
                                  "optimizer.head_lr=null"))
    task.setup()
    assert set(_lr_of(task.trainer.create_optimizer()).values()) == {2e-5}


def test_the_softmax_head_learns_at_head_lr(compose_run, monkeypatch):
    from sentence_transformers import SentenceTransformerTrainer

    seen = {}
    original = SentenceTransformerTrainer.create_optimizer

    def recording(self, *args, **kwargs):
        optimizer = original(self, *args, **kwargs)
        seen["lrs"], seen["head"] = _lr_of(optimizer), [id(p) for p in self.loss.classifier.parameters()]
        seen["decay"] = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        return optimizer

    monkeypatch.setattr(SentenceTransformerTrainer, "create_optimizer", recording)
    run(compose_run("model=tiny_bert", "debug=smoke", "logger=none"))
    assert all(seen["lrs"][i] == 1e-2 for i in seen["head"])  # task.head_lr of sbert_nli
    assert sorted(set(seen["lrs"].values())) == [2e-5, 1e-2]
    assert {seen["decay"][i] for i in seen["head"]} == {0.01, 0.0}  # weight on the head decays, its bias does not


def test_a_warm_started_encoder_decoder_names_its_new_cross_attention(tmp_path):
    """A BERT checkpoint becomes both halves of an encoder-decoder: the decoder's cross-attention and LM head are
    not in the checkpoint (transformers' load report: MISSING) and are the new parameters; nothing else is."""
    from transformers import AutoModel

    source = ModelSpec(name="tiny", tokenizer="bundled:all-MiniLM-L6-v2", random_init=TINY_BERT, seed=3)
    AutoModel.from_pretrained(source.path()).save_pretrained(tmp_path)
    source.load_tokenizer().save_pretrained(tmp_path)
    spec = ModelSpec(name="b2b", name_or_path=str(tmp_path), build="encoder_decoder")
    model = spec.generative_model()
    names = {id(p): n for n, p in model.named_parameters()}
    new = {names[id(p)] for p in spec.new_parameters(model)}
    assert new and all(n.startswith("decoder.") and (".crossattention." in n or ".cls." in n) for n in new)
    assert {n for n in names.values() if ".crossattention." in n} <= new
    # The same model saved and reloaded holds everything it has: nothing is new any more.
    model.save_pretrained(tmp_path / "trained")
    source.load_tokenizer().save_pretrained(tmp_path / "trained")
    reloaded = ModelSpec(name="b2b", name_or_path=str(tmp_path / "trained"), build="encoder_decoder")
    assert reloaded.new_parameters(reloaded.generative_model()) == []


def test_a_new_parameter_missing_from_the_groups_is_refused():
    kept, lost = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    groups = with_head_lr([{"params": [kept], "weight_decay": 0.0}], [kept], 1e-3)
    assert groups == [{"params": [], "weight_decay": 0.0}, {"params": [kept], "weight_decay": 0.0, "lr": 1e-3}]
    with pytest.raises(RuntimeError, match="would not be trained"):
        with_head_lr([{"params": [kept]}], [lost], 1e-3)


@pytest.mark.parametrize("value", ["-1", "0", "fast", "true"])
def test_a_bad_head_lr_is_one_line_naming_the_key(compose_run, value):
    with pytest.raises(NlpexpError, match="optimizer.head_lr"):
        run(compose_run("model=tiny_bert", "debug=smoke", "logger=none", f"optimizer.head_lr={value}"))
