"""The logger group: TrainerCallbacks that also record the run's config and final metrics.

`nlpexp.logger.<Name>Logger` (the configs' targets) imports only that logger's module, on first use: validating a
config reads the named logger's constructor, and must not import the others' libraries.
"""

from importlib import import_module

_MODULES = {"RunLogger": "base", "TensorBoardLogger": "tensorboard", "WandbLogger": "wandb", "MlflowLogger": "mlflow"}
__all__ = list(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(import_module(f"nlpexp.logger.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'nlpexp.logger' has no attribute {name!r}")
