"""A trivial objective: the sphere (one objective) or Binh and Korn's two (objectives=2)."""

import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="conf", config_name="sphere")
def main(cfg: DictConfig):
    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")
    if cfg.get("slow_first", False) and HydraConfig.get().job.num == 0:
        time.sleep(8)  # the first trial outlasts the others (with room for a loaded machine): who takes the next?
    x, y = float(cfg.x), float(cfg.y)
    if cfg.objectives == 2:
        return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2
    return x**2 + y**2


def configure(cfg: DictConfig, trial) -> None:
    """custom_search_space: z within cfg.max_dz of x, and a new key +w."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_dz, x + cfg.max_dz)
    trial.suggest_float("+w", 0.0, 1.0)


if __name__ == "__main__":
    main()
