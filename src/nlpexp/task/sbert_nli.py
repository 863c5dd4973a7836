"""SBERT classification objective (seed 000): o = softmax(W [u, v, |u-v|]) on NLI pairs, scored on STS.

sentence-transformers does not save the SoftmaxLoss classifier; here it is saved next to the model
(`nli_head.safetensors` + `nli_head.json`) in every checkpoint and in best_model/, and
`load_nli_classifier(path)` reloads both (nlpexp.task.nli_head). torch and sentence-transformers are imported when
the task runs: the schema reads its keys from this module.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from nlpexp import NlpexpError, is_main_process
from nlpexp.data import NLI_COLUMNS, DataSpec
from nlpexp.rules import Int, PositiveNumber
from nlpexp.task.sts import StsScoredTask

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import SoftmaxLoss

log = logging.getLogger(__name__)


class SbertNliTask(StsScoredTask):
    name = "sbert_nli"
    # The SBERT classification objective; its head also scores NLI accuracy.
    losses = ("sentence_transformers.sentence_transformer.losses.SoftmaxLoss",)
    loss_choices = "softmax"
    needs_labels = True
    loss_to_score = True  # the NLI accuracy is the head's
    labelled_data = "NLI data: data=allnli|snli|mnli|kornli"
    groups_by_length = True  # `make run`: SNLI accuracy -0.0009, STSb +0.0000, 1.16x faster (docs/performance.md)

    def __init__(self, *, trained_layers: Annotated[int, Int(0)] | None = None, head_lr: PositiveNumber | None = None,
                 **kwargs):
        # head_lr: the task's choice of optimizer.head_lr, which reads it from the config; nothing to do here.
        super().__init__(**kwargs)
        self.trained_layers = trained_layers  # the encoder's top layers that train; None: all, 0: the head alone
        self.head_trained = False

    def validation_data(self) -> list[DataSpec]:
        return [self.sts, self.data]  # STS or NLI validation picks the best checkpoint

    def setup(self) -> None:
        from nlpexp.task.nli_head import load_head

        self.model = self.load_model()
        self.loss = self.loss_factory(model=self.model, embedding_dimension=self.model.get_embedding_dimension(),
                                      num_labels=len(self.data.label_names))
        if self.mode == "train":
            freeze_lower_layers(self.model, self.trained_layers)
            pairs = self.data.load("train", NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
            # sentence-transformers reads column names as roles (a `hypothesis` column is an anchor).
            self.train_set = pairs.rename_columns({"premise": "sentence1", "hypothesis": "sentence2"})
        elif load_head(self.loss, self.model_spec.path()):
            self.head_trained = True

    def train(self) -> None:
        from nlpexp.task.nli_head import NliHead, save_head

        self.fit(self.train_set, callbacks=[NliHead(self.loss)])
        self.head_trained = True
        if is_main_process():
            save_head(self.loss, self.best_model_dir, self.data.label_names)

    def new_parameters(self) -> list:
        return list(self.loss.classifier.parameters())  # the SoftmaxLoss head starts untrained

    def evaluator(self, role: str):
        """STS, and NLI accuracy where the head is trained or training (at the start: the untrained head's)."""
        from sentence_transformers.base.evaluation import SequentialEvaluator

        from nlpexp.task.evaluators import NliAccuracyEvaluator

        evaluators = [e] if (e := super().evaluator(role)) is not None else []
        if self.data.has(role) and (self.head_trained or self.mode == "train"):
            pairs = self.data.load(role, NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
            evaluators.append(NliAccuracyEvaluator(pairs["premise"], pairs["hypothesis"], pairs["label"],
                                                   self.loss, self.trainer_settings.eval_batch_size))
        if len(evaluators) < 2:
            return evaluators[0] if evaluators else None
        return SequentialEvaluator(evaluators, main_score_function=lambda scores: scores[0])


def freeze_lower_layers(model: SentenceTransformer, trained_layers: int | None) -> None:
    """Only the top `trained_layers` transformer layers of the encoder train (None: all of them; 0: none, the
    head alone learns); the embeddings and the layers below keep their weights, and with them what a pretrained
    sentence encoder already does well (docs/tasks.md has the measurements). Frozen layers build no autograd
    graph: their backward pass is not computed."""
    if trained_layers is None:
        return
    import torch

    encoder = model[0].auto_model
    count = getattr(encoder.config, "num_hidden_layers", None)  # the layers: a ModuleList of that many
    layers = next((list(m) for m in encoder.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == count), None)
    if layers is None:
        raise NlpexpError(f"task.trained_layers: no stack of {count} transformer layers found in "
                          f"{type(encoder).__name__}; set task.trained_layers=null to train all of it")
    if trained_layers > len(layers):
        raise NlpexpError(f"task.trained_layers={trained_layers}, but the model has {len(layers)} layers")
    trained = {id(p) for layer in layers[len(layers) - trained_layers:] for p in layer.parameters()}
    for parameter in encoder.parameters():
        parameter.requires_grad_(id(parameter) in trained)
    if trained_layers == 0:
        log.info("encoder frozen (task.trained_layers=0): only the classifier head trains")
    else:
        log.info("encoder: the top %d of %d layers train, the rest is frozen", trained_layers, len(layers))


def load_nli_classifier(folder: str | Path) -> tuple[SentenceTransformer, SoftmaxLoss, list[str] | None]:
    """Reload a trained SBERT-NLI model with its classifier: (model, SoftmaxLoss, label names)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import SoftmaxLoss

    from nlpexp.task.nli_head import HEAD_CONFIG, load_head

    config = json.loads((Path(folder) / HEAD_CONFIG).read_text())
    model = SentenceTransformer(str(folder), local_files_only=True)
    label_names = config.pop("label_names", None)
    config.pop("embedding_dimension")
    loss = SoftmaxLoss(model, model.get_embedding_dimension(), **config)
    load_head(loss, folder)
    return model, loss, label_names
