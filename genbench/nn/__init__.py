"""Shared neural-network building blocks (import from the submodules, e.g. ``genbench.nn.flows``)."""
