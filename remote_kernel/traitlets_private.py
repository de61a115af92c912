"""Every use of traitlets' private internals, in one place (as ``ipykernel_private`` is for
ipykernel): the versions they were written against are the floors in ``pyproject.toml``."""

from __future__ import annotations

import re
from typing import Any

from traitlets import TraitError
from traitlets.config import Configurable


def my_config(configurable: Configurable, config: Any) -> dict:
    """The part of ``config`` addressed to ``configurable``'s class (and its bases)."""
    return configurable._find_my_config(config)


class KeepsBadConfigOut(Configurable):
    """A Configurable that starts even when a config value is refused by its trait: the value is
    left out (the trait's default stays) and ``config_problems`` says what was wrong.  A kernel
    that died at start for a typo in a config file could not say why (the reason only in a log)."""

    config_problems: list[str]

    def _load_config(self, cfg, section_names=None, traits=None) -> None:
        if not hasattr(self, "config_problems"):
            self.config_problems = []
        for _ in range(100):  # each round drops one refused value
            try:
                return super()._load_config(cfg, section_names, traits)
            except TraitError as exc:
                found = re.search(r"The '(\w+)' trait", str(exc))
                sections = [name for name in (section_names or self.section_names()) if name in cfg]
                holders = [name for name in sections if found and found.group(1) in cfg[name]]
                if not holders:
                    raise
                cfg = cfg.copy()
                for section in holders:
                    cfg[section] = cfg[section].copy()
                    value = cfg[section].pop(found.group(1))
                    self.config_problems.append(
                        f"c.{section}.{found.group(1)} = {value!r} is not valid ({exc}); the default is used")
        raise TraitError("too many refused config values")
