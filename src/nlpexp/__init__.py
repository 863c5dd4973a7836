"""nlpexp: Hydra-composed NLP experiments on the Hugging Face trainers.

Importing the package stays light (no torch/transformers): composing a config must be fast. It holds the error
every module raises for the user's mistakes, and which process of a run this is.
"""

import os

__version__ = "0.1.0"


class NlpexpError(Exception):
    """A problem with the user's config, data or environment: printed as one line, no traceback."""


def first_line(err: BaseException, message: str | None = None) -> str:
    """The message of an error (or `message`, one made from it) as one line; its type when it has none."""
    text = (str(err) if message is None else message).strip()
    return text.splitlines()[0] if text else type(err).__name__


def omegaconf_error(err: Exception, key: str | None = None) -> str:
    """An OmegaConf error (unset ${oc.env:...}, ??? value, bad interpolation) as one line naming the key."""
    from omegaconf.errors import MissingMandatoryValue

    key = getattr(err, "full_key", None) or key or "config"
    if isinstance(err, MissingMandatoryValue):
        return f"{key} is mandatory (???) and not set: pass {key}=<value>"
    message = (getattr(err, "msg", None) or str(err)).replace("KeyError raised while resolving interpolation: ", "")
    message = first_line(err, message).strip('"')
    return f"{key}: {message}"


# Several processes training one run (`torchrun`, `accelerate launch`) each learn their place from RANK and
# WORLD_SIZE; `python run.py` sets neither and is rank 0 of 1. Rank 0 alone writes the run's files (config, metrics,
# best model, loggers, ledger line); the trainers keep checkpoints and the DDP exchange to the right processes.
def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_multiprocess() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", 0)) == 0
