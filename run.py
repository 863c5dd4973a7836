"""nlpexp entry point: `python run.py task=sbert_nli model=minilm ...`; add -m to sweep."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nlpexp.cli import tolerate_closed_stdout
from nlpexp.config import CONFIG_DIR, exit_on_bad_overrides
from nlpexp.errors import NlpexpError

log = logging.getLogger("nlpexp")


@hydra.main(config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from nlpexp.pipeline import objective, run

    try:
        return objective(cfg, run(cfg))
    except NlpexpError as err:
        log.error("error: %s", err)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed trial: the sweeper records it and goes on
        sys.exit(2)


if __name__ == "__main__":
    tolerate_closed_stdout()
    exit_on_bad_overrides(sys.argv[1:])
    main()
