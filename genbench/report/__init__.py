"""The results site: ``genbench report`` writes ``results/site/``, static HTML built from the table renders, their
run records and the bench results, browsable from disk with no server and no network.

Pages: an index of every rendered table (title, published source, scales with finished/planned runs, a headline),
one page per table and scale (rows with value, interval, estimator chip, published number with its status, gap,
sortable columns and filters, the paired ranking, figures, samples, notes, raw CSV/LaTeX), one per ``genbench
compare`` render (the user's model highlighted), one per run record (config, hashes, commit, machine, wall time)
and one for the bench results. Homes: :mod:`.collect` (what is read), :mod:`.site` (what is written), the Jinja2
templates in ``templates/`` and the one stylesheet and sort/filter script in ``static/``.
"""

from .site import Site, build_site

__all__ = ["Site", "build_site"]
