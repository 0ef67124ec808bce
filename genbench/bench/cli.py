"""How fast the command answers what needs no model: ``--help``, ``list``, and a mistake (``make bench-cli``).

Each command runs in a fresh interpreter, as a user's shell starts it, the fastest of a few rounds (a shared machine
only ever adds time), beside a bare ``python -c pass`` and ``import torch`` for scale. The goal (issue 22): well under
a second for ``list`` and a misspelled key, which holds only while nothing on their path imports torch, Lightning,
pandas or matplotlib (``tests/faults/test_newcomer.py`` checks that path; this measures it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "import torch (for scale)": [sys.executable, "-c", "import torch"],
    "genbench --help": [sys.executable, "-m", "genbench.cli", "--help"],
    "genbench list": [sys.executable, "-m", "genbench.cli", "list"],
    "genbench train model=vae model.latnet=10 (misspelled key)": [sys.executable, "-m", "genbench.cli", "train",
                                                                  "model=vae", "model.latnet=10"],
    "genbench train trainer.max_epochs=-1 (out of range)": [sys.executable, "-m", "genbench.cli", "train",
                                                            "trainer.max_epochs=-1"],
    "genbench table gmm-baselnes (misspelled table)": [sys.executable, "-m", "genbench.cli", "table", "gmm-baselnes"],
}
GOAL_S = 1.0


def cli_latency(rounds: int = 5) -> dict:
    """Seconds each command takes from start to exit, the fastest of ``rounds`` interleaved rounds."""
    walls = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GENBENCH_HOME": home}
        for _ in range(rounds):
            for name, cmd in COMMANDS.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                walls[name].append(time.perf_counter() - start)
    return {"rounds": rounds, "goal_s": GOAL_S, "seconds": {name: round(min(w), 3) for name, w in walls.items()}}


def markdown(result: dict) -> list[str]:
    cli = result.get("cli_latency")
    if not cli:
        return []
    lines = [f"## (m) Start-up of the command (fastest of {cli['rounds']} rounds, a fresh interpreter each)", "",
             "| command | seconds |", "|---|---|"]
    lines += [f"| `{name}` | {s:.2f} |" for name, s in cli["seconds"].items()]
    return lines + ["", f"Goal: `genbench list` and a mistake under {cli['goal_s']:.0f} s.", ""]


def main() -> None:
    result = {"cli_latency": cli_latency()}
    print("\n".join(markdown(result)))


if __name__ == "__main__":
    main()
