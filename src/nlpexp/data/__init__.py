"""The data group (`conf/data/<name>.yaml` builds a DataSpec): which files make up each role (train / validation /
test) and how their rows are cleaned."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal

from nlpexp import NlpexpError
from nlpexp.data.readers import Source, missing_split, read_given_file, read_split
from nlpexp.rules import Name, Num, Positive, Seed

log = logging.getLogger(__name__)
steps_log = logging.getLogger("nlpexp.steps")  # conf/hydra/default.yaml: run.log only
ROLES = ("train", "validation", "test")
GIVEN = "data.<role>"  # the folder name of the files given by path (data.train=...): no folder of the mirror
POOLED = "all"  # the role name whose files `split_ratios` cuts into train/validation/test
NLI_COLUMNS = ("premise", "hypothesis", "label")  # the columns tasks load NLI and STS rows as
STS_COLUMNS = ("sentence1", "sentence2", "score")
# The files (or hub splits) read during the current run, for provenance to hash: set per run by recording_reads.
_FILES_READ: ContextVar[set[str] | None] = ContextVar("nlpexp_files_read", default=None)


@contextmanager
def recording_reads() -> Iterator[set[str]]:
    """Inside the block, every file a DataSpec reads is added to the set it yields (one set per run, no clearing)."""
    files: set[str] = set()
    token = _FILES_READ.set(files)
    try:
        yield files
    finally:
        _FILES_READ.reset(token)


class DataSpec:
    """Its settings' types and ranges are its annotations, checked (nlpexp.schema) before anything is built."""

    def __init__(
        self,
        name: Name,
        root: Name,
        sources: Mapping[str, Mapping | None],  # each checked against readers.SOURCE: Hub ids, no paths
        splits: Mapping[str, Sequence[Name]],
        columns: Mapping[str, Name | None] | None = None,
        label_names: Sequence[Name] | None = None,
        unknown_labels: Literal["error", "drop"] = "error",
        max_train_samples: Positive | None = None,
        max_eval_samples: Positive | None = None,
        seed: Seed = 42,
        split_ratios: Mapping[str, Annotated[float, Num(0, 1)]] | None = None,
        shuffle: bool = False,
        optional_roles: Sequence[Name] = (),
        train: Name | None = None,
        validation: Name | None = None,
        test: Name | None = None,
    ):
        self.name = name
        self.root = Path(root).resolve()
        self.sources = {folder: Source.from_config(src) for folder, src in sources.items()}
        self.splits = {role: list(files) for role, files in splits.items()}
        # data.train|validation|test=<file>: that role reads the given file instead of the dataset's own
        self.files = {role: path for role, path in zip(ROLES, (train, validation, test), strict=True) if path}
        if self.files and split_ratios:
            raise NlpexpError(f"data '{name}' is cut into roles by data.split_ratios; give your own files with "
                              f"data=files data.{'=..., data.'.join(self.files)}=...")
        if self.files:
            self.sources[GIVEN] = Source()
            self.splits.update({role: [f"{GIVEN}/{role}"] for role in self.files})
        self.columns = {task: yours for task, yours in (columns or {}).items() if yours}
        self.label_names = list(label_names) if label_names is not None else None
        self.unknown_labels = unknown_labels
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.seed = seed
        self.split_ratios = dict(split_ratios) if split_ratios else None
        self.shuffle = shuffle
        # Roles skipped, with a notice, when their files are neither in the mirror nor on the Hub (a held-out test).
        self.optional_roles = set(optional_roles)
        self.skipped_roles: dict[str, str] = {}
        self._check()
        self._loaded: dict[tuple, object] = {}

    def _check(self) -> None:
        if self.split_ratios is not None:
            total = sum(self.split_ratios.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6) or min(self.split_ratios.values()) < 0:
                raise NlpexpError(f"data.split_ratios must be non-negative and sum to 1, got {self.split_ratios}")
            if POOLED not in self.splits:
                raise NlpexpError(f"data.split_ratios cuts the files of data.splits.{POOLED}; list them there")
            if both := [r for r in self.splits if r != POOLED and self.split_ratios.get(r)]:
                raise NlpexpError(f"data role(s) {both} have files in data.splits and a share in data.split_ratios; "
                                  f"keep one of the two")
        for entry in (entry for files in self.splits.values() for entry in files):
            if "/" not in entry or entry.split("/", 1)[0] not in self.sources:
                raise NlpexpError(f"data.splits entry {entry!r} must be '<folder>/<split>' with a folder of "
                                  f"data.sources ({', '.join(self.sources)})")

    @property
    def roles(self) -> list[str]:
        if self.split_ratios is not None:
            return [r for r in ROLES if self._cut_by_ratio(r) or self.splits.get(r)]
        return [r for r in self.splits if self.splits[r] and not self.unavailable(r)]

    def has(self, role: str) -> bool:
        return role in self.roles

    def unavailable(self, role: str) -> bool:
        """Is `role` optional and unreadable here (a test split the mirror holds out)? Said once: no metrics."""
        if role not in self.optional_roles:
            return False
        if role not in self.skipped_roles:
            missing = [m for folder, split in (entry.split("/", 1) for entry in self.splits[role])
                       if (m := missing_split(self.root, folder, split, self.sources[folder].hub_id))]
            self.skipped_roles[role] = "; ".join(missing)
            if missing:  # run.log only (the paths are long), as every step of a run
                steps_log.info("data '%s' has no %s split here, its metrics are skipped: %s", self.name, role,
                               self.skipped_roles[role])
        return bool(self.skipped_roles[role])

    def _cut_by_ratio(self, role: str) -> bool:  # rather than read from its own files
        return bool((self.split_ratios or {}).get(role))

    def load(self, role: str, columns: Sequence[str], text_columns: Sequence[str] = (),
             optional_columns: Sequence[str] = ()):
        """Rows of `role` with the task's `columns` (renamed from the files' names) and the `optional_columns` the
        files have (e.g. a test set's extra reference summaries), cleaned and limited; read once."""
        key = (role, tuple(columns), tuple(text_columns), tuple(optional_columns))
        if key in self._loaded:
            return self._loaded[key]
        if not self.has(role):
            raise NlpexpError(f"data '{self.name}' has no '{role}' split; it has: {', '.join(self.roles) or 'none'}. "
                              f"Name its files with data.splits.{role}=[<folder>/<split>]")
        limit = self.max_train_samples if role == "train" else self.max_eval_samples
        shuffled = self.shuffle and role == "train"
        if self._cut_by_ratio(role):
            dataset = self._clean(self._pooled_role(role, columns, optional_columns), role, columns, text_columns)
        else:
            # Unshuffled, a limited role keeps its first rows: only the files that hold them need reading.
            entries = self.splits[role]
            needed = entries if shuffled or limit is None else self._files_holding(entries, limit)
            dataset = self._clean(self._concat(needed, columns, optional_columns), role, columns, text_columns)
            if len(needed) < len(entries) and len(dataset) < limit:  # cleaning dropped rows: read every file
                dataset = self._clean(self._concat(entries, columns, optional_columns), role, columns, text_columns)
        if shuffled:
            dataset = dataset.shuffle(seed=self.seed)
        if limit is not None and len(dataset) > limit:
            dataset = dataset.select(range(limit))
        self._loaded[key] = dataset
        return dataset

    def _clean(self, dataset, role: str, columns: Sequence[str], text_columns: Sequence[str]):
        where = f"data '{self.name}' {role}"
        dataset = drop_empty(dataset, text_columns, where)
        if "label" in columns and self.label_names is not None:
            dataset = encode_labels(dataset, self.label_names, self.unknown_labels, where)
        return dataset

    def _files_holding(self, entries: Sequence[str], rows: int) -> list[str]:
        """The leading entries whose files have at least `rows` rows together (all of them if they have fewer)."""
        totals = itertools.accumulate(len(self._read(entry)) for entry in entries)  # lazily: reads stop there
        return list(entries[:next((n for n, total in enumerate(totals, 1) if total >= rows), len(entries))])

    def _concat(self, entries: Sequence[str], columns: Sequence[str], optional_columns: Sequence[str]):
        import datasets

        files = [(entry, self._read(entry)) for entry in entries]
        # An optional column is kept where every file of the role has it (the parts must line up).
        present = [c for c in optional_columns
                   if all(self.columns.get(c, c) in dataset.column_names for _, dataset in files)]
        parts = [self._select_columns(dataset, [*columns, *present], entry) for entry, dataset in files]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)

    def _pooled_role(self, role: str, columns: Sequence[str], optional_columns: Sequence[str]):
        import numpy as np

        pooled = self._concat(self.splits[POOLED], columns, optional_columns)
        order = np.random.default_rng(self.seed).permutation(len(pooled))
        cut_roles = [r for r in ROLES if self._cut_by_ratio(r)]
        # Cumulative bounds, so that the parts cover every row exactly once whatever the rounding.
        shares = np.cumsum([0.0] + [self.split_ratios[r] for r in cut_roles])
        bounds = [round(share * len(pooled)) for share in shares[:-1]] + [len(pooled)]
        index = cut_roles.index(role)
        return pooled.select(order[bounds[index]:bounds[index + 1]])

    def _read(self, entry: str):
        folder, split = entry.split("/", 1)
        dataset, origin = read_given_file(f"data.{split}", self.files[split]) if folder == GIVEN \
            else read_split(self.root, folder, split, self.sources[folder])
        if (files := _FILES_READ.get()) is not None:
            files.add(origin)
        return dataset

    def _select_columns(self, dataset, columns: Sequence[str], entry: str):
        wanted = {self.columns.get(c, c): c for c in columns}
        if missing := [src for src in wanted if src not in dataset.column_names]:
            hint = " ".join(f"data.columns.{wanted[m]}=<column>" for m in missing)
            raise NlpexpError(f"data '{self.name}' file {entry} lacks column(s) {missing}; its columns are "
                              f"{dataset.column_names}. Map them with {hint}")
        dataset = dataset.select_columns(list(wanted))
        renames = {src: dst for src, dst in wanted.items() if src != dst}
        return dataset.rename_columns(renames) if renames else dataset


def drop_empty(dataset, text_columns: Sequence[str], where: str):  # where: the split, in messages
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
    from datasets import Value

    ids = {name: i for i, name in enumerate(label_names)}

    def known(value) -> bool:
        return value in ids or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(ids))

    if unknown := [v for v in dataset["label"][:] if not known(v)]:  # [:]: one read, not one per row
        examples = sorted({str(v) for v in unknown})[:5]
        if unknown_labels == "error":
            raise NlpexpError(f"{where}: {len(unknown)} label(s) outside {label_names} (e.g. {examples}); fix the "
                              "data or set data.unknown_labels=drop")
        if len(unknown) == len(dataset):
            raise NlpexpError(f"{where}: data.unknown_labels=drop would drop every row: no label is in "
                              f"{label_names} (e.g. {examples}); fix data.label_names")
        log.warning("%s: dropped %d row(s) with labels %s", where, len(unknown), examples)
        dataset = dataset.filter(lambda labels: [known(v) for v in labels], batched=True, input_columns="label")
    features = dataset.features.copy()
    features["label"] = Value("int64")
    # input_columns: only the labels are read back from Arrow, not every text of every row
    return dataset.map(lambda labels: {"label": [ids.get(v, v) for v in labels]}, features=features,
                       batched=True, input_columns="label")
