"""The sentence-embedding tasks' evaluators (StsScoredTask, nlpexp.task.sts, imports this module when it runs)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from sentence_transformers.base.evaluation import BaseEvaluator
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator


class LazyEvaluator(BaseEvaluator):
    """Stands in for the evaluator `build()` returns, building it at the first evaluation, so that a run's first
    training step does not wait for the validation data to be read and encoded (issue 20: time to first step)."""

    def __init__(self, build: Callable[[], BaseEvaluator]):
        super().__init__()
        self.build = build
        self.evaluator: BaseEvaluator | None = None

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        self.evaluator = self.evaluator or self.build()
        metrics = self.evaluator(model, output_path, epoch, steps)
        self.primary_metric, self.greater_is_better = self.evaluator.primary_metric, self.evaluator.greater_is_better
        return metrics


def lazy_evaluator(available: bool, build: Callable[[], BaseEvaluator]) -> LazyEvaluator | None:
    """A LazyEvaluator of `build`, or None where there is nothing to evaluate on (decided now, from the config,
    since the trainer refuses a run that evaluates without an evaluator before it starts)."""
    return LazyEvaluator(build) if available else None


def sts_evaluator(pairs, batch_size: int) -> DistinctSentencesSimilarityEvaluator:
    """Pearson and Spearman of cosine, euclidean, manhattan and dot similarity against gold scores."""
    return DistinctSentencesSimilarityEvaluator(
        pairs["sentence1"], pairs["sentence2"], pairs["score"], batch_size=batch_size, name="", write_csv=False,
        similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"],
    )


class DistinctSentencesSimilarityEvaluator(EmbeddingSimilarityEvaluator):
    """sentence-transformers' STS evaluator, encoding each distinct sentence once per call.

    The parent encodes sentences1 and sentences2 separately, so a sentence on both sides, or twice on one, is
    encoded twice (90 of STSb validation's 3,000). Here __call__ encodes the distinct sentences in one pass and
    embed_inputs hands the parent the rows of each side; metrics and keys are the parent's. Quantised
    precisions calibrate on what they are given, so they keep the parent's encoding.
    """

    def __init__(self, sentences1, sentences2, scores, **kwargs):
        super().__init__(list(sentences1), list(sentences2), list(scores), **kwargs)
        self.distinct = list(dict.fromkeys([*self.sentences1, *self.sentences2]))
        position = {sentence: i for i, sentence in enumerate(self.distinct)}
        self.rows1 = [position[s] for s in self.sentences1]
        self.rows2 = [position[s] for s in self.sentences2]
        self._embeddings = None  # of self.distinct, during a call

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        if self.precision is not None:
            return super().__call__(model, output_path, epoch, steps)
        self._embeddings = super().embed_inputs(model, self.distinct)
        try:
            return super().__call__(model, output_path, epoch, steps)
        finally:
            self._embeddings = None

    def embed_inputs(self, model, sentences, **kwargs):
        if self._embeddings is not None and not kwargs:
            if sentences is self.sentences1:
                return self._embeddings[self.rows1]
            if sentences is self.sentences2:
                return self._embeddings[self.rows2]
        return super().embed_inputs(model, sentences, **kwargs)


class NliAccuracyEvaluator(BaseEvaluator):
    """Accuracy and cross-entropy of a SoftmaxLoss classifier; each distinct sentence is encoded once.

    sentence-transformers' LabelAccuracyEvaluator gives the same accuracy (tests/test_evaluators.py) but no
    cross-entropy (sbert_nli's val/loss, seed 000's Loss/Val_Epoch), and it encodes both sentences of every pair:
    2.4x the CPU time on 900 SNLI validation pairs with MiniLM.
    """

    def __init__(self, premises, hypotheses, labels, loss, batch_size: int):
        super().__init__()
        self.sentences = list(dict.fromkeys([*premises, *hypotheses]))
        index = {s: i for i, s in enumerate(self.sentences)}
        self.premise_idx = torch.tensor([index[s] for s in premises])
        self.hypothesis_idx = torch.tensor([index[s] for s in hypotheses])
        self.labels = torch.tensor(list(labels))
        self.loss = loss
        self.batch_size = batch_size
        self.primary_metric = "accuracy"

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        embeddings = model.encode(self.sentences, batch_size=self.batch_size, convert_to_tensor=True,
                                  show_progress_bar=False)
        u, v = embeddings[self.premise_idx], embeddings[self.hypothesis_idx]
        loss = self.loss
        parts = ([u, v] if loss.concatenation_sent_rep else []) + \
                ([torch.abs(u - v)] if loss.concatenation_sent_difference else []) + \
                ([u * v] if loss.concatenation_sent_multiplication else [])
        with torch.no_grad():
            logits = loss.classifier(torch.cat(parts, dim=1).to(loss.classifier.weight.dtype))
            labels = self.labels.to(logits.device)
            accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
            cross_entropy = torch.nn.functional.cross_entropy(logits, labels).item()
        return {"accuracy": accuracy, "loss": cross_entropy}
