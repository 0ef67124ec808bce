"""Models: the registry's families built from their configs, and what a model may offer (:mod:`.contract`).

A model is a ``LightningModule`` that trains itself; the capabilities it may offer the evaluators (``log_prob``,
``log_prob_bound``, ``free_energy``, ``sample``, ``encode``/``decode``, ...) are defined once, in
:mod:`genbench.models.contract`. Optional class attributes: ``needs_training`` (False: nothing to fit, e.g. the
true mixture), ``supported_spaces`` (data-space kinds the model accepts), and ``discrete_log_prob`` (True: on
discrete data ``log_prob`` is a pmf over the integers; otherwise it is a density scored on dequantized data).
``frozen_parameters``: a dict, parameter name or prefix → why training leaves it at its initial value; the
conformance test fails on any other parameter (or buffer, for a model without parameters) that a few training
steps do not move. A constructor that takes an ``info`` argument receives the data module's
:class:`~genbench.data.DataInfo`. This module imports no family: each loads when it is built.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..core.errors import IncompatibleDataError
from ..core.registry import MODELS, resolve
from .contract import CAPABILITIES, EVALUATORS, SCORED, capabilities, offers

if TYPE_CHECKING:
    import lightning as L

    from ..data.base import DataInfo

__all__ = ["CAPABILITIES", "EVALUATORS", "MODELS", "SCORED", "build_model", "capabilities", "offers"]

SPACE_EXAMPLES = {"binary": "data=digits data.variant=dynamic", "discrete": "data=digits data.variant=integer",
                  "continuous": "data=gmm2d"}
"""A data choice of each space kind, named in the error for a model given the wrong kind."""


def build_model(cfg: dict[str, Any], info: DataInfo) -> L.LightningModule:
    """A model from its config (``name`` plus keyword arguments) for the given data."""
    cfg = dict(cfg)
    name = cfg.pop("name")
    cls = resolve("model", MODELS, name)
    spaces = getattr(cls, "supported_spaces", None)
    if spaces is not None and info.space.kind not in spaces:
        raise IncompatibleDataError(
            f"model {name!r} supports {', '.join(spaces)} data, but {info.variant} is {info.space}; "
            f"choose a {'/'.join(spaces)} data variant, e.g. {' or '.join(SPACE_EXAMPLES[k] for k in spaces)}")
    if "info" in inspect.signature(cls).parameters:
        cfg["info"] = info
    return cls(**cfg)
