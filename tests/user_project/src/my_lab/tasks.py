"""A task of its own: train a bi-encoder on (anchor, positive) pairs with my_lab's loss, score pair retrieval."""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.evaluation import BaseEvaluator

from my_lab.data import EntailmentPairs
from my_lab.losses import InfoNCELoss
from nlpexp import NlpexpError, is_main_process
from nlpexp.metrics import prefixed, split_name
from nlpexp.task import Task


class PairRetrievalTask(Task):
    """`retrieval_accuracy`: how often an anchor's own positive is among the `top_k` positives of the split most
    similar to it (cosine); the best checkpoint is picked by it on validation."""

    name = "pair_retrieval"
    losses = (InfoNCELoss,)
    loss_choices = "info_nce"
    needs_labels = True
    needs_validation = True

    def __init__(self, *, top_k: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.data, EntailmentPairs):
            raise NlpexpError("task=pair_retrieval trains on (anchor, positive) pairs: use data=snli_pairs")

    def setup(self) -> None:
        self.model = self.model_spec.sentence_transformer()
        self.loss = self.loss_factory(model=self.model) if self.loss_factory is not None else None
        self.train_set = self.data.pairs("train") if self.mode == "train" else None

    def train(self) -> None:
        args = self.training_arguments(SentenceTransformerTrainingArguments)
        trainer = self.make_trainer(SentenceTransformerTrainer, args, model=self.model, train_dataset=self.train_set,
                                    loss=self.loss, evaluator=self._evaluator("validation"))
        self.run_trainer(trainer)
        if is_main_process():
            self.model.save(str(self.best_model_dir))

    def score(self, role: str) -> dict[str, float]:
        evaluator = self._evaluator(role)
        return {} if evaluator is None else prefixed(evaluator(self.model), split_name(role))

    def _evaluator(self, role: str):
        if not self.data.has(role):
            return None
        pairs = self.data.pairs(role)
        return RetrievalEvaluator(pairs["anchor"], pairs["positive"], self.top_k,
                                  self.trainer_settings.eval_batch_size)


class RetrievalEvaluator(BaseEvaluator):
    def __init__(self, anchors, positives, top_k: int, batch_size: int):
        super().__init__()
        self.anchors, self.positives = list(anchors), list(positives)
        self.top_k = min(top_k, len(self.positives))
        self.batch_size = batch_size
        self.primary_metric = "retrieval_accuracy"

    def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict[str, float]:
        def encode(texts):
            return model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)

        similarity = encode(self.anchors) @ encode(self.positives).T
        best = similarity.topk(self.top_k, dim=1).indices.cpu()
        hits = (best == torch.arange(len(self.anchors)).unsqueeze(1)).any(dim=1)
        return {"retrieval_accuracy": hits.float().mean().item()}
