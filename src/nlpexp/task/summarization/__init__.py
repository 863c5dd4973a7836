"""Dialogue summarisation (seeds 001, 003) on the HF Seq2SeqTrainer, for encoder-decoder and decoder-only models.

- Encoder-decoder (BART, T5, mT5, BERT2BERT): the dialogue feeds the encoder, the summary is the label;
  predictions come from generate() (predict_with_generate).
- Decoder-only (GPT-2, KoGPT2): one sequence `dialogue + separator + summary + EOS`, the loss on the summary
  tokens only; predictions are what generate() writes after `dialogue + separator`.

ROUGE is scored against the data's reference texts, not against the tokenized labels (those are truncated, and
lower-cased by uncased tokenizers), so that every reference of a multi-reference test set counts.
Each evaluation's predictions go to predictions_<split>.jsonl in the run dir. During training, the validation
predictions of each evaluation are kept in the checkpoint saved at the same step, so the file written at the end
is the best checkpoint's, and the reported val/ metrics are its metrics.
"""

from nlpexp.task.summarization.task import SummarizationTask

__all__ = ["SummarizationTask"]
