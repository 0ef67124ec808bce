"""genbench: a comparative benchmark suite for generative models.

Models, data modules and evaluators share one vocabulary (see docs/design.md, "Concepts"):
data modules declare a data space, models declare capabilities through
optional methods (``log_prob``, ``log_prob_bound``, ``sample``, ...), and
evaluators turn (model, data) into result records that always carry their
unit, estimator kind and uncertainty.
"""

__version__ = "0.1.0"

LAYERS = (
    ("core",),                                   # errors, paths, registry, claims, progress, tensor helpers
    ("data", "nn", "published", "loggers"),      # data modules, network pieces, published numbers, loggers
    ("models",),                                 # the families and their contract
    ("evaluation",),                             # evaluators: (model, data) -> result records
    ("runs",),                                   # one run: config, identity, training, records
    ("tables",),                                 # a paper's comparison: runs aggregated, rendered
    ("sweeps", "launchers", "readme", "report"), # many runs, the README's numbers, the results site
    ("bench",),                                  # speed
    ("cli",),                                    # the command
)
"""genbench's packages and modules from the bottom up: each imports only from layers below its own (siblings in one
layer know nothing of each other), and no import cycle exists (tests/unit/test_layers.py checks both)."""
