"""Published numbers: the YAML transcriptions load, stay honest about their status, and match a second transcription.

``published_anchors.csv`` (beside this file) is an independent hand transcription, from the reference
compilations the project started from, of every number a table shows and every recalled (R) number; its header
states the provenance. Nothing here reads outside the repository.
"""

import csv
import re
from pathlib import Path

import pytest
import yaml

from genbench.core.paths import configs_dir
from genbench.published import Published, load_published
from genbench.core.errors import PublishedError

ANCHORS = Path(__file__).with_name("published_anchors.csv")
SOURCE = r"[\w.-]+\.md §[\d.]+|arXiv:\d{4}\.\d{4,5} (Table|Figure) \d+"
"""An anchor's source: a reference compilation's file and section, or a paper's arXiv id and table (read in a
full-text transcription of the arXiv version)."""


@pytest.fixture(scope="module")
def pub():
    return load_published()


@pytest.fixture(scope="module")
def anchors():
    lines = [line for line in ANCHORS.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    assert len(rows) == len({r["id"] for r in rows}) > 60
    return {r["id"]: r for r in rows}


def test_loads_everything_with_unique_ids(pub):
    files = sorted((configs_dir() / "published").glob("*.yaml"))
    raw_ids = [e["id"] for f in files for e in yaml.safe_load(f.read_text(encoding="utf-8"))]
    assert len(raw_ids) == len(set(raw_ids)) == len(pub)
    assert len(files) >= 15 and len(pub) > 300
    assert all(isinstance(p, Published) for p in pub.values())


def _numbers(text: str) -> set[float]:
    """The numbers printed in ``text``, without their sign (−86.34 → 86.34)."""
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}


def test_each_anchor_is_in_its_printed_excerpt(anchors):
    # a typo in the value or std column shows as a number the source does not print
    for pid, a in anchors.items():
        assert abs(float(a["value"])) in _numbers(a["printed"]), pid  # a log_likelihood keeps its printed sign
        if a["std"]:
            assert float(a["std"]) in _numbers(a["printed"]), pid
        assert a["status"] in ("P", "S", "R", "D") and re.fullmatch(SOURCE, a["source"]), pid


def test_yaml_matches_the_second_transcription(pub, anchors):
    for pid, a in anchors.items():
        assert pid in pub, f"{pid}: in {ANCHORS.name} but not in configs/published/"
        p = pub[pid]
        assert p.value == pytest.approx(float(a["value"]), rel=1e-12), pid
        assert p.std == (pytest.approx(float(a["std"]), rel=1e-12) if a["std"] else None), pid
        assert p.status == a["status"], pid
        # the YAML cites the same file and section (e.g. "published-numbers.md §1.1", not §1.12)
        file, section = a["source"].split(" ", 1)
        assert p.source.startswith(file) and re.search(re.escape(section) + r"(?![\d])", p.source), pid


def test_recalled_numbers_stay_recalled(pub, anchors):
    recalled = {pid for pid, a in anchors.items() if a["status"] == "R"}
    assert len(recalled) == 19
    assert all(not pub[pid].verified for pid in recalled)
    # nothing else is R, and no R was upgraded: a change of status must be made in both transcriptions
    assert {pid for pid, p in pub.items() if p.status == "R"} == recalled


def _table_ids(spec: dict) -> set[str]:
    ids = {r["id"] if isinstance(r, dict) else r for r in spec.get("references") or []}
    for row in [*spec.get("models", []), *(spec.get("derived") or [])]:
        published = row.get("published") or {}
        for v in published.values() if isinstance(published, dict) else [published]:
            ids.update(v)
    return ids


def test_every_number_a_table_shows_is_transcribed_twice(anchors):
    shown = {pid: path.stem for path in sorted((configs_dir() / "table").glob("*.yaml"))
             for pid in _table_ids(yaml.safe_load(path.read_text(encoding="utf-8")))}
    assert len(shown) > 50
    missing = {pid: table for pid, table in shown.items() if pid not in anchors}
    assert not missing, f"add these to {ANCHORS.name}, transcribed from their source: {missing}"


def test_status_of_the_anchor_rows(pub):
    cd25 = pub["sm08-rbm-cd25-500"]
    assert (cd25.value, cd25.status, cd25.metric, cd25.estimator) == (86.34, "S", "nll", "estimate")
    assert cd25.verified
    assert cd25.label() == "86.34 (S&M 2008, Table 2, status S)"
    assert pub["iwae-t1-mnist-2l-k50-iwae"].status == "P"


def test_spot_checks(pub):
    iwae = pub["iwae-t1-mnist-2l-k50-iwae"]
    assert (iwae.value, iwae.variant, iwae.estimator) == (82.90, "mnist/dynamic", "upper bound")

    pac = pub["pacgan-t1-grid-ali-modes"]
    assert (pac.value, pac.std, pac.std_kind, pac.metric) == (24.1, 0.4, "std_error", "modes_veegan")
    assert pac.label() == "24.1 ± 0.4 (Lin et al. 2018, Table 1, status P)"

    vee = pub["veegan-t1-ring-gan-modes"]
    assert (vee.value, vee.dataset, vee.metric) == (1, "gmm2d/ring8", "modes_veegan")

    ali = pub["ali-toy-ali-modes"]
    assert (ali.value, ali.std, ali.metric) == (13.4, 5.8, "modes_ali")
    assert pub["ali-toy-ali-modes-min"].value == 8 and pub["ali-toy-ali-modes-max"].value == 25
    assert pub["ali-toy-gan-modes"].value == 10.4 and pub["ali-toy-gan-modes"].std == 9.2
    assert pub["ali-toy-gan-modes-min"].value == 1 and pub["ali-toy-gan-modes-max"].value == 22

    nice = pub["nice-t51-mnist-bpd"]
    assert (nice.value, nice.metric, nice.unit) == (4.36, "bits_per_dim", "bits/dim")
    ll = pub["nice-t51-mnist-ll"]
    assert (ll.value, ll.metric, ll.unit) == (1980.50, "log_likelihood", "nats")

    assert pub["iwae-t3-mnist-2l-k50-iwae"].variant == "mnist/larochelle"
    assert pub["ali-cifar10-4000-ali"].std_kind == "3std"
    assert pub["maf-t1-power-maf5"].std_kind == "2std"


def test_nll_is_positive_and_units_match(pub):
    for p in pub.values():
        if p.metric == "nll":
            assert p.value > 0 and p.unit == "nats", p.id
        if p.metric == "bits_per_dim":
            assert p.unit == "bits/dim", p.id


ENTRY = dict(id="x-1", paper="A & B 2000", table="Table 1", dataset="mnist", variant="mnist/dynamic",
             model="M", metric="nll", unit="nats", value=1.0, std=None, std_kind=None, estimator="exact",
             status="P", source="here")


def _write(path, entries):
    path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")


def test_good_file_loads(tmp_path):
    _write(tmp_path / "a.yaml", [ENTRY])
    got = load_published(tmp_path)
    assert got["x-1"].label() == "1 (A&B 2000, Table 1, status P)"


@pytest.mark.parametrize("change, message", [
    (dict(status="V"), "status"),
    (dict(status="S2"), "status"),
    (dict(metric="nll_bits"), "metric"),
    (dict(unit="bits/dim"), "unit"),
    (dict(estimator="AIS"), "estimator"),
    (dict(value="86.34"), "value"),
    (dict(std=0.4), "std_kind"),
    (dict(std=0.4, std_kind="sigma"), "std_kind"),
    (dict(id="Bad_Id"), "kebab"),
    (dict(extra="x"), "unknown keys"),
])
def test_bad_entries_are_rejected(tmp_path, change, message):
    _write(tmp_path / "bad.yaml", [{**ENTRY, **change}])
    with pytest.raises(PublishedError, match=message) as err:
        load_published(tmp_path)
    assert "bad.yaml" in str(err.value)


def test_missing_key_is_rejected(tmp_path):
    entry = dict(ENTRY)
    del entry["estimator"]
    _write(tmp_path / "bad.yaml", [entry])
    with pytest.raises(PublishedError, match="missing keys"):
        load_published(tmp_path)


def test_duplicate_id_is_rejected_within_and_across_files(tmp_path):
    _write(tmp_path / "one.yaml", [ENTRY, {**ENTRY, "value": 2.0}])
    with pytest.raises(PublishedError, match=r"one\.yaml.*duplicate id 'x-1'"):
        load_published(tmp_path)
    _write(tmp_path / "one.yaml", [ENTRY])
    _write(tmp_path / "two.yaml", [{**ENTRY, "value": 2.0}])
    with pytest.raises(PublishedError, match=r"two\.yaml: duplicate id 'x-1' \(first defined in one\.yaml\)"):
        load_published(tmp_path)
