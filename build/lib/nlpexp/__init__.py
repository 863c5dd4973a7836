"""nlpexp: Hydra-composed NLP experiments on the Hugging Face trainers.

Importing the package stays light (no torch/transformers): composing a config must be fast.
"""

__version__ = "0.1.0"
