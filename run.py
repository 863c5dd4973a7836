"""nlpexp entry point: `python run.py task=sbert_nli model=minilm ...`; add -m to sweep."""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nlpexp.cli import tolerate_closed_stdout
from nlpexp.config import CONFIG_DIR, TARGET_ALLOWLIST, exit_on_bad_overrides
from nlpexp.errors import NlpexpError
from nlpexp.gate import exit_on_unsafe_command_line
from nlpexp.redaction import redact_output

log = logging.getLogger("nlpexp")


# Hydra builds launchers, sweepers, callbacks and logging handlers under the same allow-list as nlpexp does.
@hydra.main(config_path=str(CONFIG_DIR), config_name="config", execution_whitelist=TARGET_ALLOWLIST)
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
    redact_output()  # secrets never reach the console or a log, errors included
    tolerate_closed_stdout()
    exit_on_bad_overrides(sys.argv[1:])
    exit_on_unsafe_command_line(sys.argv[1:], __file__, str(CONFIG_DIR), "config")  # nothing built before it
    main()
