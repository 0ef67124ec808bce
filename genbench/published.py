"""Published numbers from the literature, one validated record per number.

The records live in ``configs/published/*.yaml`` (one file per source paper or
section), transcribed from ``published-numbers.md``. Each carries the data
protocol (``variant``), how the source computed it (``estimator``) and a
``status`` tag, so that a table can put a reproduction beside the right anchor:

* ``P``: verified in a primary source (the paper's text, the authors' repository);
* ``S``: verified only in a secondary source that transcribes the table;
* ``R``: recalled, no source found: a lead to check, never an anchor;
* ``D``: derived by arithmetic, not published.

The status is kept exactly as the compilation gives it and is never upgraded
here: it is what stops an unverified number from being read as an anchor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from genbench.core.paths import configs_dir

from .core.errors import PublishedError

METRICS = {
    # metric -> allowed units
    "nll": ("nats",),  # test NLL of the data, positive (printed log-prob -86.34 -> 86.34)
    "bits_per_dim": ("bits/dim",),
    "log_likelihood": ("nats",),  # a log-likelihood as printed, in a space that is not the data's NLL
    "log_z": ("nats",),
    "modes_ali": ("modes",),  # ALI §4.5 protocol: modes with >= 1 sample assigned by responsibilities
    "modes_ali_min": ("modes",),
    "modes_ali_max": ("modes",),
    "modes_veegan": ("modes",),  # VEEGAN/PacGAN: modes nearest to >= 1 high-quality sample
    "high_quality_pct": ("%",),
    "reverse_kl": ("nats", "none"),  # PacGAN: KL(high-quality mode histogram || uniform); ours in nats, the paper does not say
    "kl_modes": ("none",),  # stacked MNIST: KL between the mode histogram and uniform
    "ivom": ("none",),  # VEEGAN's inference-via-optimization metric (reconstruction error)
    "error_pct": ("%",),
    "test_errors": ("errors",),  # misclassified test examples, a count (Salimans et al.'s MNIST unit: of 10,000)
    "fid": ("none",),
    "inception_score": ("none",),
    "sample_time": ("s",),  # published wall-clock per sample
    "overhead_pct": ("%",),  # published relative cost of a component
    "nll_increase_pct": ("%",),  # 100 (NLL − NLL of a reference model) / NLL of the reference
    "nll_increase_reduction_pct": ("%",),  # how much less a mitigated model's NLL increase is, in % of the unmitigated one's
    "reconstruction_error": ("none",),  # 2D inference: mean ||x - decode(encode(x))||^2 on held-out points (data units^2)
    "reconstruction_same_mode_pct": ("%",),  # 2D inference: reconstructions in the same mixture component as their input
    "latent_mmd": ("none",),  # 2D inference: unbiased MMD^2 between the encoded q(z) and N(0, I)
    "latent_ks": ("none",),  # 2D inference: max per-dimension KS statistic of q(z) against N(0, 1)
}
UNITS = ("nats", "bits/dim", "modes", "%", "none", "s", "errors")
ESTIMATORS = ("exact", "upper bound", "lower bound", "estimate", "unknown")
"""``exact``: the metric as defined, no bound (a flow's NLL, a mode count);
``upper``/``lower bound``: bounds on the named metric (an ELBO-based NLL is an
upper bound); ``estimate``: AIS or importance sampling; ``unknown``: the
source does not say."""
STATUSES = ("P", "S", "R", "D")
STD_KINDS = ("std", "std_error", "3std", "2std", "unstated")
"""What the source's ± means; ``unstated`` when it prints a ± without saying."""

_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Published:
    """One published number and what is needed to read it honestly."""

    id: str
    paper: str
    table: str
    dataset: str
    variant: str
    model: str
    metric: str
    unit: str
    value: float
    std: float | None
    std_kind: str | None
    estimator: str
    status: str
    source: str
    notes: str | None = None

    @property
    def verified(self) -> bool:
        """True for P and S: only these may serve as anchors in a comparison."""
        return self.status in ("P", "S")

    def label(self) -> str:
        """E.g. ``"86.34 (S&M 2008, Table 2, status S)"``, for table cells and captions."""
        num = f"{self.value:g}" + (f" ± {self.std:g}" if self.std is not None else "")
        return f"{num} ({short_citation(self.paper)}, {self.table}, status {self.status})"


def short_citation(paper: str) -> str:
    """``"Salakhutdinov & Murray 2008"`` -> ``"S&M 2008"``; other citations unchanged."""
    m = re.fullmatch(r"([A-Z][\w-]*) & ([A-Z][\w-]*) (\d{4}.*)", paper)
    return f"{m[1][0]}&{m[2][0]} {m[3]}" if m else paper


_REQUIRED = tuple(f.name for f in fields(Published) if f.name != "notes")
_OPTIONAL = ("notes",)


def _check(entry, where: str) -> Published:
    if not isinstance(entry, dict):
        raise PublishedError(f"{where}: each entry must be a mapping, got {type(entry).__name__}")
    eid = entry.get("id")
    where = f"{where} (id {eid!r})"
    missing = [k for k in _REQUIRED if k not in entry]
    extra = [k for k in entry if k not in _REQUIRED + _OPTIONAL]
    if missing or extra:
        raise PublishedError(f"{where}: missing keys {missing}, unknown keys {extra}")
    for k in ("id", "paper", "table", "dataset", "variant", "model", "source"):
        if not isinstance(entry[k], str) or not entry[k].strip():
            raise PublishedError(f"{where}: {k} must be a non-empty string")
    if not _ID.match(eid):
        raise PublishedError(f"{where}: id must be lower-case kebab-case")
    if entry.get("notes") is not None and not isinstance(entry["notes"], str):
        raise PublishedError(f"{where}: notes must be a string")

    def vocab(key, allowed):
        if entry[key] not in allowed:
            raise PublishedError(f"{where}: {key} {entry[key]!r} is not one of {list(allowed)}")

    vocab("metric", METRICS)
    vocab("unit", METRICS[entry["metric"]])
    vocab("estimator", ESTIMATORS)
    vocab("status", STATUSES)
    for k in ("value", "std"):
        v = entry[k]
        if v is None and k == "std":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PublishedError(f"{where}: {k} must be a finite number, got {v!r}")
    if (entry["std"] is None) != (entry["std_kind"] is None):
        raise PublishedError(f"{where}: std and std_kind must both be set or both be null")
    if entry["std"] is not None:
        vocab("std_kind", STD_KINDS)
        if entry["std"] < 0:
            raise PublishedError(f"{where}: std must be >= 0")
    values = {k: entry.get(k) for k in _REQUIRED + _OPTIONAL}
    values["value"] = float(values["value"])
    if values["std"] is not None:
        values["std"] = float(values["std"])
    return Published(**values)


def load_published(folder: str | Path | None = None) -> dict[str, Published]:
    """Read and validate every ``*.yaml`` in ``folder`` (default ``configs/published``).

    Returns ``{id: Published}`` in file-name then entry order. Raises
    :class:`PublishedError` on a malformed entry or an id used twice, so that a
    typo cannot silently shadow or mislabel an anchor.
    """
    if folder is None:
        folder = configs_dir() / "published"
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise PublishedError(f"no published-number files (*.yaml) in {folder}")
    out: dict[str, Published] = {}
    seen_in: dict[str, str] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            entries = yaml.safe_load(f)
        if not isinstance(entries, list):
            raise PublishedError(f"{path.name}: must be a YAML list of entries")
        for i, entry in enumerate(entries):
            rec = _check(entry, f"{path.name} entry {i}")
            if rec.id in out:
                raise PublishedError(f"{path.name}: duplicate id {rec.id!r} (first defined in {seen_in[rec.id]})")
            out[rec.id] = rec
            seen_in[rec.id] = path.name
    return out
