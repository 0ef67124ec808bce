"""`genbench table NAME --logger wandb`: the runs grouped TABLE/SCALE in W&B and the render logged as a W&B table
with its figures, read back from the offline runs' files (no key, WANDB_MODE=offline: tests/conftest.py)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from helpers.tables import records_of, tiny_table

from genbench.cli import main
from genbench.core.paths import results_dir


COLUMNS = ["model", "dataset", "variant", "metric", "unit", "estimator", "obtained", "low", "high", "std_error",
           "seed_std", "seeds", "run_status", "published", "published_status", "gap", "source"]


@dataclass
class OfflineRun:
    """What a ``.wandb`` file says of one offline run: its id, name, group, job type and logged values."""

    id: str
    name: str
    group: str
    job_type: str
    files: Path
    logged: dict[str, object] = field(default_factory=dict)


BLOCK = 32768
"""A ``.wandb`` file is a LevelDB-format log (a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks, each with a
7-byte header: CRC, length, type) of protobuf ``Record`` messages."""


def wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def offline_runs() -> dict[str, OfflineRun]:
    """Every offline run under results/wandb/, by its display name."""
    runs = {}
    for path in results_dir("wandb").glob("wandb/offline-run-*/run-*.wandb"):
        run = None
        for rec in wandb_records(path):
            if rec.WhichOneof("record_type") == "run":
                run = OfflineRun(rec.run.run_id, rec.run.display_name, rec.run.run_group, rec.run.job_type,
                                 path.parent / "files")
            elif rec.WhichOneof("record_type") == "history":
                run.logged.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                   for item in rec.history.item})
        runs[run.name] = run
    return runs


@pytest.fixture
def tiny(configs_copy):
    (configs_copy / "table" / "wbtiny.yaml").write_text(tiny_table(seeds=(0,), mob_epochs=1))
    return "wbtiny"


def test_a_table_logs_its_render_as_a_wandb_table_with_figures_grouped_by_table_and_scale(tiny, capsys):
    assert main(["table", tiny, "--logger", "wandb", "--workers", "2"]) == 0  # 2 forked workers: they get it too
    runs, render = offline_runs(), pd.read_csv(results_dir("tables", tiny, "smoke.csv"))
    table = runs[f"{tiny}--smoke"]
    assert (table.group, table.job_type) == (f"{tiny}/smoke", "table")

    records = records_of(tiny)
    assert len(records) == 2 and all(r["status"] == "finished" for r in records.values())
    for run_id, record in records.items():  # the training runs: one W&B run each, in the table's group
        assert runs[run_id].id == record["wandb_run_id"] and runs[run_id].group == f"{tiny}/smoke"
        assert runs[run_id].job_type != "table" and "table/path" not in runs[run_id].logged

    logged = json.loads((table.files / table.logged["table/path"]).read_text())
    assert logged["columns"] == COLUMNS and len(logged["data"]) == len(render) == 4
    lines = pd.DataFrame(logged["data"], columns=COLUMNS)
    assert list(lines["model"]) == list(render["row"]) and list(lines["metric"]) == list(render["metric"])
    assert list(lines["obtained"]) == pytest.approx(list(render["obtained"]))
    assert list(lines["std_error"]) == pytest.approx(list(render["obtained_se"]))
    assert set(lines["unit"]) == {"nats", "bits/dim"} and set(lines["estimator"]) == {"exact"}
    published = lines[lines["published"].notna()].iloc[0]  # MoB's nll beside sm08-mob-10, whose status is R
    assert published["published_status"] == "R"
    assert published["gap"] == pytest.approx(published["obtained"] - published["published"])
    assert lines["low"].isna().all() and lines["gap"].isna().sum() == 3  # empty, not NaN, where there is none

    drawn = sorted(p.stem.split("_", 1)[1] for p in results_dir("figures", tiny).glob("smoke_*.png"))
    images = sorted(k.split("/")[1] for k in table.logged if k.startswith("figure/") and k.endswith("/path"))
    assert drawn and images == drawn
    for name in images:
        assert (table.files / table.logged[f"figure/{name}/path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # again with csv: the logger key is not in the config hash, so nothing reruns and nothing goes to W&B
    capsys.readouterr()
    assert main(["table", tiny, "--logger", "csv"]) == 0
    assert capsys.readouterr().out.count("done before") == 2
    assert records_of(tiny) == records and offline_runs().keys() == runs.keys()
