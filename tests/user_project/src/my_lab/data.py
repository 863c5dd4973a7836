"""A dataset of its own: NLI files read by nlpexp's DataSpec, turned into (anchor, positive) pairs."""

from __future__ import annotations

from nlpexp import NlpexpError
from nlpexp.data import DataSpec


class EntailmentPairs(DataSpec):
    """Each premise with a hypothesis of label `keep_label`: what a contrastive loss trains on."""

    def __init__(self, *, keep_label: str = "entailment", **kwargs):
        super().__init__(**kwargs)
        if keep_label not in (self.label_names or ()):
            raise NlpexpError(f"data.keep_label={keep_label!r} is not one of data.label_names {self.label_names}")
        self.keep_label = keep_label

    def pairs(self, role: str):
        rows = self.load(role, ("premise", "hypothesis", "label"), text_columns=("premise", "hypothesis"))
        kept = self.label_names.index(self.keep_label)
        rows = rows.filter(lambda label: label == kept, input_columns="label")
        return rows.select_columns(["premise", "hypothesis"]).rename_columns(
            {"premise": "anchor", "hypothesis": "positive"})
