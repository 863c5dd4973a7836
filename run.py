"""nlpexp entry point: `python run.py task=sbert_nli model=minilm ...`; add -m to sweep."""

import sys

import hydra
from omegaconf import DictConfig

from nlpexp.boundary import exit_on_error, job_errors
from nlpexp.config import CONFIG_DIR


@hydra.main(config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    from nlpexp.pipeline import objective, run

    with job_errors(cfg):  # one `error:` line; a sweep's trial re-raises so that the sweeper records it
        return objective(cfg, run(cfg))


if __name__ == "__main__":
    exit_on_error(main, sys.argv[1:])  # Hydra's own errors (composition, run dir, sweeper) as one line too
