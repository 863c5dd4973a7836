"""Training examples for embedding losses, shaped from NLI or STS rows.

Column names are the roles sentence-transformers reads by position: (anchor, positive[, negative]) for
in-batch-negative losses, (sentence1, sentence2, score) for scored-pair losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nlpexp import NlpexpError
from nlpexp.data import NLI_COLUMNS

# all_pairs: every (premise, hypothesis) whatever its label (what seed 004 did);
# entailment_pairs: entailed hypotheses only; triplets: (premise, entailment, that premise's first contradiction).
NLI_FORMATS = ("all_pairs", "entailment_pairs", "triplets")  # task.nli_format: the schema refuses any other


def nli_ranking_examples(rows, label_names: Sequence[str], nli_format: str):
    """(anchor, positive) pairs or (anchor, positive, negative) triplets from NLI rows with label ids."""
    import datasets

    # Columns read in one go: a Dataset column indexed row by row costs an Arrow lookup per row (seconds on NLI data)
    premises, hypotheses, labels = (list(rows[c][:]) for c in NLI_COLUMNS)
    if nli_format == "all_pairs":
        return datasets.Dataset.from_dict({"anchor": premises, "positive": hypotheses})
    if missing := [name for name in ("entailment", "contradiction") if name not in label_names]:
        raise NlpexpError(f"NLI data needs a '{missing[0]}' label; its labels are {list(label_names)}")
    entailment, contradiction = list(label_names).index("entailment"), list(label_names).index("contradiction")
    entailed = [i for i, label in enumerate(labels) if label == entailment]
    if nli_format == "entailment_pairs":
        return datasets.Dataset.from_dict({"anchor": [premises[i] for i in entailed],
                                           "positive": [hypotheses[i] for i in entailed]})
    first_contradiction: dict[str, str] = {}
    for premise, hypothesis, label in zip(premises, hypotheses, labels, strict=True):
        if label == contradiction:
            first_contradiction.setdefault(premise, hypothesis)
    kept = [i for i in entailed if premises[i] in first_contradiction]
    if not kept:
        raise NlpexpError("task.nli_format=triplets: no premise has both an entailment and a contradiction")
    return datasets.Dataset.from_dict({"anchor": [premises[i] for i in kept], "positive": [hypotheses[i] for i in kept],
                                       "negative": [first_contradiction[premises[i]] for i in kept]})


def nli_scored_pairs(rows, label_names: Sequence[str], label_scores: Mapping[str, float]):
    """(sentence1, sentence2, score) with each NLI label mapped to a similarity by `label_scores`."""
    import datasets

    if missing := [name for name in label_names if name not in label_scores]:
        raise NlpexpError(f"task.label_scores lacks a score for label(s) {missing}; give one per label")
    scores = [float(label_scores[label_names[label]]) for label in rows["label"]]
    return datasets.Dataset.from_dict({"sentence1": rows["premise"], "sentence2": rows["hypothesis"],
                                       "score": scores})


def sts_scored_pairs(rows, max_score: float):
    """(sentence1, sentence2, score / max_score): STS gold scores (0-5) scaled to the cosine range."""
    import datasets

    return datasets.Dataset.from_dict({"sentence1": rows["sentence1"], "sentence2": rows["sentence2"],
                                       "score": [float(s) / max_score for s in rows["score"]]})


def unique_texts(rows, columns: Sequence[str]) -> list[str]:
    """Every distinct text of `columns`, in first-seen order (row by row)."""
    return list(dict.fromkeys(text for values in zip(*(rows[c] for c in columns), strict=True) for text in values))


def random_pairs(sentences: Sequence[str], per_sentence: int, rng) -> list[tuple[str, str]]:
    """Each sentence with `per_sentence` partners drawn uniformly from the others (seeded by `rng`)."""
    count = len(sentences)
    if count < 2:
        raise NlpexpError(f"random pairs need at least 2 sentences, got {count}")
    partners = rng.integers(0, count - 1, size=(count, per_sentence))
    partners += partners >= np.arange(count)[:, None]  # skip the sentence itself
    return unordered_unique([(sentences[i], sentences[j]) for i in range(count) for j in partners[i]])


def unordered_unique(pairs) -> list[tuple[str, str]]:
    """Pairs without repeats, (a, b) and (b, a) counting as one and a == b dropped; first orientation kept."""
    seen, kept = set(), []
    for a, b in pairs:
        key = (a, b) if a <= b else (b, a)
        if a != b and key not in seen:
            seen.add(key)
            kept.append((a, b))
    return kept
