"""LAUNCHER_CONFIG_DIR on Hydra's search path, for the launch and every subcommand alike.

A search path plugin, not an override added to the command line: it holds for Hydra's own composition
(`python -m launcher`, its sweeps) and the compose API (`status`, `sync`, ...), and leaves the user's
`hydra.searchpath=` and `--config-dir` free. The directories come after the package's conf/, as Hydra puts
`--config-dir`: an option of the package keeps its meaning; a user's own names are added.
"""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from launcher.user_config import env_config_dirs


class LauncherConfigDirs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for directory in env_config_dirs():
            search_path.append(provider="launcher-env", path=f"file://{directory}")
