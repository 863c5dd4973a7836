"""The logger group: TrainerCallbacks that also record the run's config and final metrics."""

from nlpexp.logger.base import RunLogger
from nlpexp.logger.tensorboard import TensorBoardLogger
from nlpexp.logger.wandb import WandbLogger

__all__ = ["RunLogger", "TensorBoardLogger", "WandbLogger"]
