"""docs/adding-a-model.md, run as written: its files are written where it says, its commands run in order."""

from __future__ import annotations

import re

import pandas as pd
import torch

from genbench.cli import main
from genbench.core.paths import home, results_dir
from genbench.runs.store import read_record
from helpers import REPO

DOC = REPO / "docs" / "adding-a-model.md"
FILE = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w+\n(?P<body>.*?)```", re.S)
RUN = re.compile(r"<!-- run -->\n```bash\n(?P<body>.*?)```", re.S)


def test_the_page_adds_a_model_that_trains_and_ranks_in_a_table(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    files = {m["path"]: m["body"] for m in FILE.finditer(text)}
    assert set(files) == {"my_models/gaussian.py", "results/configs/model/gaussian.yaml"}
    monkeypatch.chdir(tmp_path)  # where a user keeps their own model
    for path, body in files.items():
        where = home() / path if path.startswith("results/") else tmp_path / path
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(body)
    commands = [line.split() for m in RUN.finditer(text) for line in m["body"].strip().splitlines()]
    assert [c[:2] for c in commands] == [["genbench", "train"], ["genbench", "compare"]]
    torch.manual_seed(0)
    for command in commands:
        assert main(command[1:]) == 0, capsys.readouterr().err

    frame = pd.read_csv(results_dir("tables", "gmm-baselines--compare-gaussian", "smoke.csv"))
    ours = frame[(frame["row"] == "gaussian (compared)") & (frame["metric"] == "nll")].set_index("dataset")
    truth = frame[(frame["row"] == "true mixture") & (frame["metric"] == "nll")].set_index("dataset")
    assert set(ours.index) == {"ring8", "grid25"} and (ours["obtained"] > truth["obtained"] + 1).all()
    [record] = results_dir("runs", "gmm-baselines", "smoke").glob("gaussian-compared--ring8--s0.json")
    assert read_record(record)["model_source"]["path"] == str(tmp_path / "my_models" / "gaussian.py")
