"""SummarizationTask: loads the model and data, trains on the Seq2SeqTrainer, scores with ROUGE. Its trainer side
(nlpexp.task.summarization.trainers: torch, transformers) and ROUGE are imported when it runs: the schema reads the
task's keys from this module."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np

from nlpexp import NlpexpError
from nlpexp.data.cache import cached_map
from nlpexp.generation import GenerationSettings
from nlpexp.io import write_text_atomic
from nlpexp.metrics import from_trainer_logs, split_name
from nlpexp.rules import NAME, ListOf, Name, Positive, Text
from nlpexp.task import Task

if TYPE_CHECKING:
    from nlpexp.task.summarization.trainers import Examples


class SummarizationTask(Task):
    name = "summarization"
    needs_validation = True  # the best checkpoint is picked by ROUGE on validation

    def __init__(
        self,
        *,
        generation: GenerationSettings,
        reference_columns: Annotated[Sequence[str], ListOf(NAME, min_length=1)] = ("summary",),
        multi_reference: Literal["best", "mean"] = "best",  # how several references combine (nlpexp.task.rouge)
        use_stemmer: bool = True,
        max_target_length: Positive = 128,
        source_prefix: Annotated[str, Text(meaning="a string")] | None = None,
        prompt_separator: Name = " TL;DR: ",
        **kwargs,
    ):
        from nlpexp.task.rouge import Rouge

        super().__init__(**kwargs)
        self.generation = generation
        self.reference_columns = list(reference_columns)
        self.rouge = Rouge(multi_reference, use_stemmer)
        self.max_target_length = max_target_length
        self.source_prefix = source_prefix
        self.prompt_separator = prompt_separator

    def validate(self) -> None:
        super().validate()
        self.model_spec.check_can_generate()  # reads the model's config, not its weights

    # -- setup ---------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

        from nlpexp.task.summarization import trainers

        self.tokenizer = self.model_spec.load_tokenizer()
        self.model = self.model_spec.generative_model()
        self.causal = not self.model.config.is_encoder_decoder
        self.model.generation_config.update(**self.generation.generate_kwargs())
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]
        self.pad_id = next((i for i in (self.tokenizer.pad_token_id, self.model.config.pad_token_id, *self.eos_ids)
                            if i is not None), None)
        if self.pad_id is None:
            raise NlpexpError(f"model '{self.model_spec.name}' has neither a pad nor an eos token id; set one in "
                              "its config")
        if self.causal:
            if not self.eos_ids:
                raise NlpexpError(f"model '{self.model_spec.name}' has no eos_token_id: a decoder-only summariser "
                                  "needs one to end the summary (set it in the model config)")
            self.model.generation_config.pad_token_id = self.pad_id
            self.collator = trainers.CausalLMCollator(self.pad_id)
        else:
            self.collator = DataCollatorForSeq2Seq(self.tokenizer, model=self.model,
                                                   label_pad_token_id=trainers.IGNORE_INDEX)
        if self.source_prefix is None:  # the input prefix the checkpoint was pretrained with (t5-small: "summarize: ")
            params = getattr(self.model.config, "task_specific_params", None) or {}
            self.source_prefix = (params.get("summarization") or {}).get("prefix", "")
        self.kept_predictions = False  # training left the best checkpoint's validation predictions in the run dir
        # One trainer for training and for every evaluation: in eval mode it only predicts.
        training = {}
        if self.mode == "train":
            scorer = trainers.PredictionScorer(self._examples("validation"), self.decode, self.rouge)
            self.train_set = self._features(self._examples("train"), with_prompt=False)
            training = {"train_dataset": self.train_set, "compute_metrics": scorer,
                        "eval_dataset": self._features(scorer.examples, with_prompt=True),
                        "callbacks": [*self.training_callbacks(), trainers.PredictionsWithCheckpoints(scorer)]}
        args = self.training_arguments(Seq2SeqTrainingArguments, predict_with_generate=True,
                                       remove_unused_columns=False)  # keeps the prompts of decoder-only models
        self.trainer = self.make_trainer(trainers.SummarizationTrainer, args, model=self.model,
                                         data_collator=self.collator, processing_class=self.tokenizer, **training)

    def new_parameters(self) -> list:
        return self.model_spec.new_parameters(self.model) if self.mode == "train" else []

    def _examples(self, role: str) -> Examples:
        from nlpexp.task.summarization.trainers import load_examples

        return load_examples(self.data, role, self.reference_columns)

    def _features(self, examples: Examples, with_prompt: bool):
        """Token ids for the trainer (cached on disk); `with_prompt` adds decoder-only models' generation input."""
        from datasets import Dataset

        from nlpexp.task.summarization.trainers import causal_features, seq2seq_features

        rows = Dataset.from_dict({"source": [self.source_prefix + d for d in examples.dialogues],
                                  "target": [refs[0] for refs in examples.references]})
        lengths = {"source_length": self.model_spec.max_seq_length, "target_length": self.max_target_length}
        if self.causal:
            function = causal_features
            settings = {**lengths, "separator": self.prompt_separator, "eos_id": self.eos_ids[0],
                        "with_prompt": with_prompt}
        else:
            function, settings = seq2seq_features, {**lengths, "start_id": self.model.config.decoder_start_token_id}
        return cached_map(rows, function, self.tokenizer, cache_dir=self.cache_dir, label=examples.role,
                          settings=settings, remove_columns=["source", "target"])

    # -- train and evaluate --------------------------------------------------------------------------------------

    def train(self) -> None:
        from nlpexp.task.summarization.trainers import predictions_file

        self.run_trainer(self.trainer)
        self.trainer.save_model(str(self.best_model_dir))
        best = self.trainer.state.best_model_checkpoint
        kept = Path(best) / predictions_file("validation") if best else None
        if kept is not None and kept.is_file():
            write_text_atomic(self.run_dir / predictions_file("validation"), kept.read_text(encoding="utf-8"))
            self.kept_predictions = True

    def reuses_validation(self) -> bool:
        return self.kept_predictions  # else evaluate() generates the validation predictions again

    def score(self, role: str) -> dict[str, float]:
        from nlpexp.task.summarization.trainers import PredictionScorer, predictions_file

        scorer = PredictionScorer(self._examples(role), self.decode, self.rouge)
        training_scorer, self.trainer.compute_metrics = self.trainer.compute_metrics, scorer
        try:
            output = self.trainer.predict(self._features(scorer.examples, with_prompt=True), metric_key_prefix="eval")
        finally:
            self.trainer.compute_metrics = training_scorer
        scorer.write(self.run_dir / predictions_file(role))
        return from_trainer_logs(output.metrics, split_name(role))

    def decode(self, generated: np.ndarray) -> list[str]:
        """Summaries from generated ids: without the decoder start token (seq2seq), cut at EOS, no padding."""
        texts = []
        for row in np.asarray(generated):
            ids = [int(i) for i in (row if self.causal else row[1:]) if i >= 0]  # -100 pads between batches
            end = next((k for k, i in enumerate(ids) if i in self.eos_ids), len(ids))
            ids = [i for i in ids[:end] if i != self.pad_id]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        return texts
