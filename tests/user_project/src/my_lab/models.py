"""A model of its own: nlpexp's ModelSpec (bundled, local, hub or random-init encoder + pooling) with a dense
projection after the pooling."""

from __future__ import annotations

from nlpexp.model import ModelSpec


class ProjectedModel(ModelSpec):
    """Every `model.*` setting of nlpexp, plus `projection_dim`: the size of the tanh projection of the pooled
    vector."""

    def __init__(self, *, projection_dim: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = projection_dim

    def sentence_transformer(self):
        from sentence_transformers.sentence_transformer.modules import Dense

        model = super().sentence_transformer()
        if not any(isinstance(module, Dense) for module in model):  # a saved one has its projection already
            model.append(Dense(model.get_embedding_dimension(), self.projection_dim))
        return model
