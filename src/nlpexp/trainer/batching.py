"""Length-aware batches for the sentence-transformers trainers (`trainer.group_by_length`,
`trainer.max_tokens_per_batch`): a batch costs its longest example times its size, the rest is padding.

Each epoch the examples are shuffled, cut into mega-batches of MEGA_BATCH_MULT batches, sorted by length inside each,
then cut into batches, and the batches themselves are shuffled: similar lengths within a batch, random order across
them (the recipe of transformers' LengthGroupedSampler, which the sentence-transformers trainers do not use). Under a
token budget, an example of length L goes to a bucket of half the batch size, halved again until size x L fits
`max_tokens`: long sequences get smaller batches rather than an out-of-memory retry; each bucket is grouped on its
own. Lengths are token counts by the model's tokenizer (truncated as the model truncates), all text columns of an
example together.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

import numpy as np
from sentence_transformers.base.sampler import BatchSamplers, DefaultBatchSampler

log = logging.getLogger(__name__)
MEGA_BATCH_MULT = 50  # transformers' LengthGroupedSampler default: 50 batches, or fewer for small datasets


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Batches of similar lengths, optionally without a text twice in a batch and under a token budget. Every
    example is in exactly one batch per epoch; the batches depend only on `seed` and the epoch."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator=None, seed: int = 0, *, lengths: Sequence[int], max_tokens: int | None = None,
                 no_duplicates: bool = False, mega_batch_mult: int = MEGA_BATCH_MULT):
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if len(self.lengths) != len(dataset):
            raise ValueError(f"{len(self.lengths)} lengths for {len(dataset)} examples")
        self.max_tokens = max_tokens
        self.mega_batch_mult = mega_batch_mult
        self.texts = row_texts(dataset, valid_label_columns) if no_duplicates else None
        self._plan: tuple[int, list[list[int]]] | None = None

    def __iter__(self):
        yield from self.batches()

    def __len__(self) -> int:
        # Exact for the epoch set last (the trainer reads it once, before epoch 0); without no_duplicates every
        # epoch has the same count, with it a later epoch may differ by a batch or two, as the library's own.
        return len(self.batches())

    def batches(self) -> list[list[int]]:
        """This epoch's batches (computed once per epoch)."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._make_batches(np.random.default_rng([self.seed or 0, self.epoch])))
        return self._plan[1]

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        caps = batch_caps(self.lengths, self.batch_size, self.max_tokens)
        batches: list[list[int]] = []
        for cap in sorted(set(caps.tolist()), reverse=True):
            members = np.flatnonzero(caps == cap)
            # as transformers: at least 4 mega-batches when the data is small, so that grouping keeps some randomness
            mega_batch_mult = max(1, min(len(members) // (cap * 4), self.mega_batch_mult))
            order = grouped_order(members[rng.permutation(len(members))], self.lengths, cap * mega_batch_mult)
            if self.texts is None:
                batches += [order[i:i + cap] for i in range(0, len(order), cap)]
            else:
                batches += split_without_duplicates(order, cap, self.texts)
        if self.drop_last:
            batches = [b for b in batches if len(b) == caps[b[0]]]
        return [batches[i] for i in rng.permutation(len(batches))]


def batch_caps(lengths: np.ndarray, batch_size: int, max_tokens: int | None) -> np.ndarray:
    """Per example, the batch size it may share: `batch_size`, halved until cap x length <= max_tokens (>= 1)."""
    caps = np.full(len(lengths), batch_size, dtype=np.int64)
    if max_tokens is not None:
        while (over := (caps * lengths > max_tokens) & (caps > 1)).any():
            caps[over] //= 2
    return caps


def grouped_order(indices: np.ndarray, lengths: np.ndarray, mega_batch_size: int) -> list[int]:
    """`indices` (already shuffled) cut into mega-batches, each sorted longest first (stable: ties stay random)."""
    order: list[int] = []
    for start in range(0, len(indices), mega_batch_size):
        mega = indices[start:start + mega_batch_size]
        order += mega[np.argsort(-lengths[mega], kind="stable")].tolist()
    return order


def split_without_duplicates(order: list[int], cap: int, texts: Sequence[frozenset]) -> list[list[int]]:
    """Batches of `cap` in `order`, an example that repeats a text of the batch waiting for the next one (which
    holds examples of about its length). Every example lands in exactly one batch; the last batches may be short."""
    pending, batches = deque(order), []
    while pending:
        batch, seen, deferred = [], set(), []
        while pending and len(batch) < cap:
            index = pending.popleft()
            if seen.isdisjoint(texts[index]):
                batch.append(index)
                seen |= texts[index]
            else:
                deferred.append(index)
        pending.extendleft(reversed(deferred))
        batches.append(batch)
    return batches


def row_texts(dataset, label_columns: Sequence[str] | None) -> list[frozenset]:
    """Per row, the values a batch must not repeat: every column but the labels (as NoDuplicatesBatchSampler)."""
    columns = [c for c in dataset.column_names if c not in set(label_columns or ()) | {"dataset_name"}]
    values = [list(dataset[c]) for c in columns]
    return [frozenset(str(v) for v in row) for row in zip(*values, strict=True)]


def token_lengths(dataset, tokenizer, max_length: int | None, label_columns: Sequence[str] | None = None
                  ) -> np.ndarray:
    """Tokens per example, its text columns together, each truncated to `max_length` as the model does.
    Each distinct text is tokenised once (NLI premises repeat)."""
    labels = set(label_columns or ())
    total = np.zeros(len(dataset), dtype=np.int64)
    for column in (name for name, feature in dataset.features.items()
                   if name not in labels and getattr(feature, "dtype", None) in ("string", "large_string")):
        texts = [str(t) for t in dataset[column]]
        distinct = list(dict.fromkeys(texts))
        encoded = tokenizer(distinct, add_special_tokens=True, truncation=max_length is not None,
                            max_length=max_length, return_attention_mask=False,
                            return_token_type_ids=False)["input_ids"]
        by_text = dict(zip(distinct, map(len, encoded), strict=True))
        total += np.fromiter((by_text[t] for t in texts), dtype=np.int64, count=len(texts))
    return total


def padding_share(batches: Sequence[Sequence[int]], lengths: np.ndarray) -> float:
    """The share of the tokens a model computes that are padding: 1 - real tokens / (size x longest), summed."""
    computed = sum(len(b) * int(lengths[b].max()) for b in batches if len(b))
    return 1.0 - float(sum(int(lengths[b].sum()) for b in batches)) / computed if computed else 0.0


class LengthGrouping:
    """The `args.batch_sampler` of a sentence-transformers trainer with trainer.group_by_length or
    trainer.max_tokens_per_batch: LengthGroupedBatchSampler, lengths by the model's tokenizer, no_duplicates kept."""

    def __init__(self, model, max_tokens: int | None, library_choice):
        self.tokenizer, self.max_length, self.max_tokens = model.tokenizer, model.max_seq_length, max_tokens
        self.no_duplicates = library_choice in (BatchSamplers.NO_DUPLICATES, BatchSamplers.NO_DUPLICATES_HASHED)

    def __getstate__(self) -> dict:
        return {**vars(self), "tokenizer": None}  # the trainer pickles its args into every checkpoint

    def __call__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        lengths = token_lengths(dataset, self.tokenizer, self.max_length, valid_label_columns)
        sampler = LengthGroupedBatchSampler(
            dataset, batch_size, drop_last, valid_label_columns, generator, seed, lengths=lengths,
            max_tokens=self.max_tokens, no_duplicates=self.no_duplicates)
        log.info("length-grouped batches: %d per epoch, %.0f %% padding (random batches: %.0f %%)", len(sampler),
                 100 * padding_share(sampler.batches(), lengths), 100 * random_padding_share(lengths, batch_size, seed))
        return sampler


def random_padding_share(lengths: np.ndarray, batch_size: int, seed: int = 0) -> float:
    """The padding share of plain shuffled batches of `batch_size`, for comparison."""
    order = np.random.default_rng(seed).permutation(len(lengths))
    return padding_share([order[i:i + batch_size] for i in range(0, len(order), batch_size)], lengths)
