"""``make gpu-check`` without a GPU: its CPU mode (what ``make gpu-check`` does on this machine), and its device path
on the simulated device, where every family must agree with the CPU on the same weights."""

from __future__ import annotations

import json

import pytest

from genbench.bench.gpu import FAMILIES, TINY, gpu_check, main
from genbench.core.device_guard import SIMULATED, simulated_device
from genbench.core.paths import results_dir


def test_gpu_check_in_cpu_mode_says_no_gpu_was_measured():
    """``make gpu-check`` on this machine (at batches of 4): every family, and the report's first line says so."""
    assert main(["--tiny"]) == 0
    report = (results_dir("bench") / "gpu.md").read_text()
    assert "**No GPU was measured**" in report and all(f"| {family} |" in report for family in FAMILIES)


@pytest.mark.slow  # 24 s; every model's device-cleanness is in make test already (test_device_guard.py)
def test_every_family_agrees_with_the_cpu_on_the_simulated_device(tmp_path):
    """Every family's paper model takes steps on the (simulated) device with no device bug, and its scores there
    equal the CPU's within tolerance (exact numbers, bounds, AIS, mode counts)."""
    with simulated_device() as guard:  # mixing only: models are built on the CPU here, then moved
        checks = gpu_check(SIMULATED, steps=2, warmup=0, examples=8, extra=TINY, out=tmp_path)
    assert not guard.violations
    assert [c.family for c in checks] == list(FAMILIES)
    for c in checks:
        assert c.steps_per_s > 0 and c.paper_steps > 0 and c.agreements, c.family
        assert c.ok, (c.family, [a for a in c.agreements if not a.ok])
    kept = json.loads((tmp_path / "gpu.json").read_text())
    assert kept["environment"]["device"] == "meta" and all(c["ok"] for c in kept["checks"])
