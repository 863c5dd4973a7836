"""The model layer: the bundled model is verified, hub ids fail fast offline with one clear line."""

from __future__ import annotations

import pytest

from nlpexp import NlpexpError
from nlpexp.model import ModelSpec, weights


def test_bundled_minilm_resolves_offline_with_its_hash():
    path = ModelSpec(name="minilm", name_or_path="bundled:all-MiniLM-L6-v2").path()
    assert path.endswith("model")


def test_bundled_hash_mismatch_is_refused(monkeypatch):
    weights.bundled_path.cache_clear()
    package, folder, _ = weights.BUNDLED["all-MiniLM-L6-v2"]
    monkeypatch.setitem(weights.BUNDLED, "all-MiniLM-L6-v2", (package, folder, "0" * 64))
    with pytest.raises(NlpexpError, match="sha256"):
        weights.bundled_path("all-MiniLM-L6-v2")
    weights.bundled_path.cache_clear()


def test_hub_id_offline_is_one_line_naming_the_way_out():
    with pytest.raises(NlpexpError) as err:
        ModelSpec(name="bert", name_or_path="bert-base-uncased").path()
    message = str(err.value)
    assert "\n" not in message and "model=minilm" in message and "bert-base-uncased" in message


def test_missing_local_folder():
    with pytest.raises(NlpexpError, match="no such folder"):
        ModelSpec(name="x", name_or_path="./does/not/exist").path()


def test_tiny_random_model_builds_a_sentence_transformer():
    spec = ModelSpec(name="tiny", tokenizer="bundled:all-MiniLM-L6-v2", max_seq_length=32,
                     random_init={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
                                  "num_attention_heads": 2, "intermediate_size": 64})
    model = spec.sentence_transformer()
    assert model.get_embedding_dimension() == 32 and model.max_seq_length == 32
    assert model.encode(["hello world"]).shape == (1, 32)


def test_pooling_is_configurable():
    spec = ModelSpec(name="minilm", name_or_path="bundled:all-MiniLM-L6-v2", pooling="cls")
    model = spec.sentence_transformer()
    assert model[1].pooling_mode == "cls"


def test_pickled_weights_need_an_explicit_opt_in(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tiny = ModelSpec(name="tiny", tokenizer="bundled:all-MiniLM-L6-v2", seed=1,
                     random_init={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "intermediate_size": 64})
    model = AutoModel.from_pretrained(tiny.path())
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # an old-style pickled checkpoint
    AutoTokenizer.from_pretrained(tiny.path()).save_pretrained(tmp_path)
    assert (tmp_path / "pytorch_model.bin").is_file() and not (tmp_path / "model.safetensors").exists()
    with pytest.raises(OSError, match="safetensors"):
        ModelSpec(name="pickled", name_or_path=str(tmp_path)).sentence_transformer()
    model = ModelSpec(name="pickled", name_or_path=str(tmp_path), allow_pickle_weights=True).sentence_transformer()
    assert model.get_embedding_dimension() == 32
