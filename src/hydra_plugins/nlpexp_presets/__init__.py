"""The `experiment` config group read from a plain folder: `nlpexp-presets://<folder>` in a search path.

Wherever nlpexp's conf/ is the primary config dir, PresetsSearchPath appends
`nlpexp-presets://<checkout>/experiments` to the search path, so that the presets live in the user-facing
experiments/ and `experiment=<name>` finds `experiments/<name>.yaml`, with no symlink from conf/ (none on Windows,
none in an sdist). Hydra discovers both plugins under the `hydra_plugins` namespace.
"""

from hydra_plugins.nlpexp_presets.source import PresetsConfigSource, PresetsSearchPath

__all__ = ["PresetsConfigSource", "PresetsSearchPath"]
