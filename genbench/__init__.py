"""genbench: a comparative benchmark suite for generative models.

Models, data modules and evaluators share one vocabulary (see docs/design.md, "Concepts"):
data modules declare a data space, models declare capabilities through
optional methods (``log_prob``, ``log_prob_bound``, ``sample``, ...), and
evaluators turn (model, data) into result records that always carry their
unit, estimator kind and uncertainty.
"""

__version__ = "0.1.0"
