"""The `experiment` config group (the presets) read from the checkout's plain experiments/ folder: wherever
nlpexp's conf/ is the primary config dir, each `experiments/<name>.yaml` is stored as the option `experiment=<name>`
in Hydra's ConfigStore (its `# @package` line kept): no symlink from conf/ (none on Windows, none in an sdist),
only Hydra's public API. Other Hydra apps get no `experiment` group.
"""

import os
import re

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

GROUP = "experiment"
PROVIDER = "nlpexp-presets"


class PresetsSearchPath(SearchPathPlugin):
    """Run by Hydra whenever it builds a search path: run.py, its security gate, nlpexp.config.compose, --help."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from nlpexp.paths import group_dir

        store = ConfigStore.instance()
        _forget(store.repo, GROUP)  # read afresh each time, and for nlpexp only (another package's stay)
        primary = {os.path.realpath(e.path.split("://", 1)[-1]) for e in search_path.get_path() if e.provider == "main"}
        if os.path.realpath(group_dir("")) not in primary:
            return
        folder = group_dir(GROUP)
        for path in sorted(folder.rglob("*.yaml")):
            header = re.match(r"(?:\s*#\s*@.*\n)*?\s*#\s*@package\s+(\S+)", path.read_text(encoding="utf-8"))
            group = "/".join([GROUP, *path.relative_to(folder).parent.parts])
            store.store(name=path.stem, node=OmegaConf.load(path), group=group, package=header and header[1],
                        provider=PROVIDER, replace=True)


def _forget(parent: dict, name: str) -> None:
    """Remove what this plugin stored under parent[name] (a group: a dict of configs and subgroups)."""
    group = parent.get(name, {})
    for key, entry in list(group.items()):
        if isinstance(entry, dict):
            _forget(group, key)
        elif entry.provider == PROVIDER:
            del group[key]
    if name in parent and not group:
        del parent[name]
