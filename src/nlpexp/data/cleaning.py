"""Row cleaning of a loaded split: rows with an empty text dropped, label names encoded as ids.

`where` names the split in messages, e.g. "data 'snli' train"."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nlpexp import NlpexpError

log = logging.getLogger(__name__)


def drop_empty(dataset, text_columns: Sequence[str], where: str):
    if not text_columns:
        return dataset

    def non_empty(*columns) -> list[bool]:  # batched: a row-by-row filter takes seconds on NLI-sized files
        return [all(isinstance(text, str) and text.strip() for text in row) for row in zip(*columns, strict=True)]

    kept = dataset.filter(non_empty, batched=True, input_columns=list(text_columns))
    if len(kept) == 0:
        raise NlpexpError(f"{where}: every row has an empty text")
    if dropped := len(dataset) - len(kept):
        log.warning("%s: dropped %d row(s) with an empty text", where, dropped)
        return kept
    return dataset  # without filter's row mapping, which makes every later map gather row by row


def encode_labels(dataset, label_names: Sequence[str], unknown_labels: str, where: str):
    """The `label` column as int64 ids into `label_names` (ids already in range are kept); other labels are an
    error, or dropped with unknown_labels=drop."""
    ids = {name: i for i, name in enumerate(label_names)}

    def known(value) -> bool:
        return value in ids or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(ids))

    unknown = [v for v in dataset["label"][:] if not known(v)]  # [:]: one read, not one per row
    if unknown:
        examples = sorted({str(v) for v in unknown})[:5]
        if unknown_labels == "error":
            raise NlpexpError(f"{where}: {len(unknown)} label(s) outside {label_names} (e.g. {examples}); fix the "
                              "data or set data.unknown_labels=drop")
        if len(unknown) == len(dataset):
            raise NlpexpError(f"{where}: data.unknown_labels=drop would drop every row: no label is in "
                              f"{label_names} (e.g. {examples}); fix data.label_names")
        log.warning("%s: dropped %d row(s) with labels %s", where, len(unknown), examples)
        dataset = dataset.filter(lambda labels: [known(v) for v in labels], batched=True, input_columns="label")
    from datasets import Value

    features = dataset.features.copy()
    features["label"] = Value("int64")
    # input_columns: only the labels are read back from Arrow, not every text of every row
    return dataset.map(lambda labels: {"label": [ids.get(v, v) for v in labels]}, features=features,
                       batched=True, input_columns="label")
