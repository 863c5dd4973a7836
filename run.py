"""nlpexp entry point: `python run.py task=sbert_nli model=minilm ...`; add -m to sweep."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nlpexp.config import CONFIG_DIR, exit_on_bad_overrides
from nlpexp.distributed import is_main_process
from nlpexp.errors import NlpexpError

log = logging.getLogger("nlpexp")


@hydra.main(config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from nlpexp.pipeline import objective, run

    if not is_main_process():
        log_to_console_only()
    try:
        return objective(cfg, run(cfg))
    except NlpexpError as err:
        log.error("error: %s", err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed trial: the sweeper records it and goes on
        sys.exit(2)


def log_to_console_only() -> None:
    """run.log is rank 0's; the other processes of a multi-process run would interleave their lines with it."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


if __name__ == "__main__":
    exit_on_bad_overrides(sys.argv[1:])
    main()
