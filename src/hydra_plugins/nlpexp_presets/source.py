"""The presets folder as Hydra's config group `experiment`: a config source for it, and the search path entry."""

from __future__ import annotations

import builtins
import os

from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "experiment"


class PresetsConfigSource(FileConfigSource):
    """`nlpexp-presets://<folder>`: `experiment/<name>` is `<folder>/<name>.yaml`; nothing else is found here."""

    @staticmethod
    def scheme() -> str:
        return "nlpexp-presets"

    @staticmethod
    def _in_folder(config_path: str) -> str | None:
        """The path inside the folder of a config path of the group; None for any other config path."""
        group, _, rest = config_path.strip("/").partition("/")
        return rest if group == GROUP else None

    def load_config(self, config_path: str) -> ConfigResult:
        inner = self._in_folder(config_path)
        if not inner:
            raise ConfigLoadError(f"Config not found : {config_path} (this source holds only {GROUP}/)")
        return super().load_config(inner)

    def available(self) -> bool:
        return os.path.isdir(self.path)

    def is_group(self, config_path: str) -> bool:
        if config_path.strip("/") == "":
            return self.available()
        inner = self._in_folder(config_path)
        return inner is not None and super().is_group(inner)

    def is_config(self, config_path: str) -> bool:
        inner = self._in_folder(config_path)
        return bool(inner) and super().is_config(inner)

    def list(self, config_path: str, results_filter: ObjectType | None) -> builtins.list[str]:
        if config_path.strip("/") == "":
            return [GROUP] if self.available() and results_filter in (None, ObjectType.GROUP) else []
        inner = self._in_folder(config_path)
        if inner is None or not super().is_group(inner):
            return []
        files: builtins.list[str] = []
        for name in os.listdir(os.path.join(self.path, inner)):
            self._list_add_result(files, os.path.join(config_path, name), name, results_filter)
        return sorted(set(files))


class PresetsSearchPath(SearchPathPlugin):
    """Adds `nlpexp-presets://<presets dir>` wherever nlpexp's conf/ is the primary config dir: run.py, its security
    gate, nlpexp.config.compose and `--help` all see the same groups. Other Hydra apps are left alone."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from nlpexp.config import CONFIG_DIR, PRESETS_DIR

        dirs = {os.path.realpath(e.path.split("://", 1)[-1]) for e in search_path.get_path() if e.provider == "main"}
        if os.path.realpath(CONFIG_DIR) in dirs:
            search_path.append(provider="nlpexp-presets", path=f"{PresetsConfigSource.scheme()}://{PRESETS_DIR}")
