"""The one door to what genbench needs only for some jobs: a package imported on first use, with one paragraph
saying how to install it when it is absent.

Scale-out engines are extras (``pip install 'genbench[cluster]'``: submitit, Ray, the PostgreSQL driver), the
peers of ``make bench`` are the ``bench`` extra; W&B and seaborn are installed with genbench but cost seconds to
import, so they too load only where used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

EXTRAS = {"submitit": "cluster", "ray": "cluster", "psycopg": "cluster", "normflows": "bench"}
"""Module → the extra that installs it (pyproject.toml's optional-dependencies)."""


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`ConfigError` naming what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        how = f"pip install 'genbench[{extra}]'" if extra else f"pip install {top}"
        raise ConfigError(f"{purpose} needs the package {top!r}, which cannot be imported here ({e}); install it with "
                          f"`{how}` (a checkout's `make setup` installs every extra the tests use)") from None
