"""The bottom layer: what every other layer needs, importing nothing of genbench above it.

Errors (the user-facing types), paths (the results home, the reference, the data root), the name registry, file
claims, progress display, and the tensor helpers shared by data, networks and evaluators: fast Bernoulli draws
and their uniforms, gradient averaging across ranks, and the data transforms (binarization, dequantization,
logit, bits/dim). ``tests/unit/test_layers.py`` keeps the rule.
"""
