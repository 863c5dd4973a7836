"""SBERT classification objective (seed 000): o = softmax(W [u, v, |u-v|]) on NLI pairs, scored on STS.

sentence-transformers does not save the SoftmaxLoss classifier; here it is saved next to the model
(`nli_head.safetensors` + `nli_head.json`) in every checkpoint and in best_model/, and
`load_nli_classifier(path)` reloads both.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation import SequentialEvaluator
from sentence_transformers.sentence_transformer.losses import SoftmaxLoss
from transformers import TrainerCallback

from nlpexp import NlpexpError, is_main_process
from nlpexp.data import DataSpec
from nlpexp.task.evaluators import NliAccuracyEvaluator, StsScoredTask

log = logging.getLogger(__name__)
NLI_COLUMNS = ("premise", "hypothesis", "label")
HEAD_WEIGHTS, HEAD_CONFIG = "nli_head.safetensors", "nli_head.json"


class SbertNliTask(StsScoredTask):
    name = "sbert_nli"
    losses = (SoftmaxLoss,)  # the SBERT classification objective; its head also scores NLI accuracy
    loss_choices = "softmax"
    needs_labels = True
    loss_to_score = True  # the NLI accuracy is the head's
    labelled_data = "NLI data: data=allnli|snli|mnli|kornli"
    groups_by_length = True  # `make run`: SNLI accuracy -0.0009, STSb +0.0000, 1.16x faster (docs/performance.md)

    def __init__(self, *, trained_layers: int | None = None, head_lr: float | None = None, **kwargs):
        # head_lr: the task's choice of optimizer.head_lr, which reads it from the config; nothing to do here.
        super().__init__(**kwargs)
        self.trained_layers = trained_layers  # the encoder's top layers that train; None: all, 0: the head alone
        self.head_trained = False

    def validation_data(self) -> list[DataSpec]:
        return [self.sts, self.data]  # STS or NLI validation picks the best checkpoint

    def setup(self) -> None:
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
        self.fit(self.train_set, callbacks=[NliHead(self.loss)])
        self.head_trained = True
        if is_main_process():
            save_head(self.loss, self.best_model_dir, self.data.label_names)

    def new_parameters(self) -> list:
        return list(self.loss.classifier.parameters())  # the SoftmaxLoss head starts untrained

    def evaluator(self, role: str):
        """STS spearman and, where the head is trained or training (the start's accuracy is the untrained head's),
        NLI accuracy."""
        evaluators = [e] if (e := super().evaluator(role)) is not None else []
        if self.data.has(role) and (self.head_trained or self.mode == "train"):
            pairs = self.data.load(role, NLI_COLUMNS, text_columns=NLI_COLUMNS[:2])
            evaluators.append(NliAccuracyEvaluator(pairs["premise"], pairs["hypothesis"], pairs["label"],
                                                   self.loss, self.trainer_settings.eval_batch_size))
        if len(evaluators) < 2:
            return evaluators[0] if evaluators else None
        return SequentialEvaluator(evaluators, main_score_function=lambda scores: scores[0])


class NliHead(TrainerCallback):
    """What the trainer does not do for the SoftmaxLoss classifier, which lives in the loss, not in the model: keep
    it in every checkpoint (loaded with the one training resumes from or ends with), train one head across
    processes (DDP averages the model's gradients only) and log its training accuracy, counted from the logits
    the loss computes anyway. First among the callbacks: the loggers see the accuracy."""

    def __init__(self, loss: SoftmaxLoss):
        self.loss, self.logits, self.correct, self.total = loss, None, 0, 0
        loss.classifier.register_forward_hook(lambda module, args, output: setattr(self, "logits", output))
        loss.register_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        labels = args[1] if len(args) > 1 else None
        if labels is not None and self.logits is not None and torch.is_grad_enabled():
            self.correct += (self.logits.argmax(-1) == labels.view(-1)).sum().item()
            self.total += labels.numel()

    def resume(self, checkpoint: str | None) -> None:  # called by nlpexp.trainer.build.fit
        if checkpoint is not None:
            load_head(self.loss, checkpoint)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        average_gradients(self.loss.classifier)  # the head is outside the model: never clipped, so exact here

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:  # every process logs: the counts are summed over them all
            correct, total = sum_over_processes([self.correct, self.total])
            self.correct = self.total = 0
            if total:
                logs["train_accuracy"] = correct / total

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            save_head(self.loss, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if args.load_best_model_at_end and state.best_model_checkpoint:
            load_head(self.loss, state.best_model_checkpoint)


def average_gradients(module) -> None:
    """Average `module`'s gradients over the processes, as DDP does for the model it wraps: for parameters that
    live outside that model (the loss's own classifier), which each process would otherwise train alone."""
    dist = _process_group()
    if dist is None:
        return
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)  # a sum: gloo has no average
            param.grad.div_(dist.get_world_size())


def sum_over_processes(values: list[float]) -> list[float]:
    """`values` summed position by position over the processes (every process must call it)."""
    dist = _process_group()
    if dist is None:
        return list(values)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(values))  # objects: no device to pick, whatever the backend
    return [sum(column) for column in zip(*gathered, strict=True)]


def _process_group():
    """torch.distributed when the trainer has joined several processes in a group, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def freeze_lower_layers(model: SentenceTransformer, trained_layers: int | None) -> None:
    """Only the top `trained_layers` transformer layers of the encoder train (None: all of them; 0: none, the
    head alone learns); the embeddings and the layers below keep their weights, and with them what a pretrained
    sentence encoder already does well (docs/tasks.md has the measurements). Frozen layers build no autograd
    graph: their backward pass is not computed."""
    if trained_layers is None:
        return
    encoder = model[0].auto_model
    layers = transformer_layers(encoder)
    if trained_layers > len(layers):
        raise NlpexpError(f"task.trained_layers={trained_layers}, but the model has {len(layers)} layers")
    trained = {id(p) for layer in layers[len(layers) - trained_layers:] for p in layer.parameters()}
    for parameter in encoder.parameters():
        parameter.requires_grad_(id(parameter) in trained)
    if trained_layers == 0:
        log.info("encoder frozen (task.trained_layers=0): only the classifier head trains")
    else:
        log.info("encoder: the top %d of %d layers train, the rest is frozen", trained_layers, len(layers))


def transformer_layers(encoder) -> list:
    """The encoder's stack of transformer layers: its ModuleList of config.num_hidden_layers modules."""
    count = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    raise NlpexpError(f"task.trained_layers: no stack of {count} transformer layers found in "
                      f"{type(encoder).__name__}; set task.trained_layers=null to train all of it")


def save_head(loss: SoftmaxLoss, folder: Path, label_names=None) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in loss.classifier.state_dict().items()}, str(folder / HEAD_WEIGHTS))
    config = {**loss.get_config_dict(), "embedding_dimension": loss.model.get_embedding_dimension()}
    if label_names is not None:
        config["label_names"] = list(label_names)
    elif (folder / HEAD_CONFIG).is_file():
        config["label_names"] = json.loads((folder / HEAD_CONFIG).read_text()).get("label_names")
    (folder / HEAD_CONFIG).write_text(json.dumps(config, indent=2))


def load_head(loss: SoftmaxLoss, folder: str | Path) -> bool:
    """Load a saved classifier into `loss`; False when the folder has none."""
    from safetensors.torch import load_file

    weights = Path(folder) / HEAD_WEIGHTS
    if not weights.is_file():
        return False
    loss.classifier.load_state_dict(load_file(str(weights)))
    return True


def load_nli_classifier(folder: str | Path) -> tuple[SentenceTransformer, SoftmaxLoss, list[str] | None]:
    """Reload a trained SBERT-NLI model with its classifier: (model, SoftmaxLoss, label names)."""
    config = json.loads((Path(folder) / HEAD_CONFIG).read_text())
    model = SentenceTransformer(str(folder), local_files_only=True)
    label_names = config.pop("label_names", None)
    config.pop("embedding_dimension")
    loss = SoftmaxLoss(model, model.get_embedding_dimension(), **config)
    load_head(loss, folder)
    return model, loss, label_names
