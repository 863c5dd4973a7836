"""Augmented SBERT (seed 004; Thakur et al. 2021): a few gold pairs, many silver ones.

One run does four stages, each leaving its artifact in the run dir:
  1. cross_encoder/     a cross-encoder trained on the gold pairs: the first `gold_size` training rows, NLI pairs
                        scored by their label (seed 004) or STS pairs with their scores (the paper's in-domain
                        setting: data=stsb|korsts)
  2. candidates.jsonl   unlabelled pairs: the remaining rows' own pairs, or random / nearest-neighbour pairs of
                        their sentences
  3. silver.jsonl       the candidates with the cross-encoder's score (its probability of "similar")
  4. best_model/        the bi-encoder trained on gold + silver with the `loss` group (cosine by default)
A rerun in the same run dir skips the stages already done. stages.json records the settings each artifact was
built with; a rerun whose settings differ is refused instead of mixing artifacts. `task.gold_only=true` skips
stages 1-3 (the baseline). With several processes (torchrun), each computes every stage and rank 0 alone writes
the artifacts.
"""

from nlpexp.task.augsbert.task import AugSbertTask

__all__ = ["AugSbertTask"]
