"""The README's measured numbers are generated from the committed renders (genbench/readme.py): the committed README
is up to date, a stale or broken marker is named by the check, and a rewrite restores the render's value."""

from __future__ import annotations

import re

import pytest

from genbench import readme
from genbench.readme import MARKER, main, parse, scan
from helpers import REPO

REFERENCE = REPO / "reference"
MOB = '<!--n binary-baselines/paper "MoB (K=500)" mnist nll-->'


@pytest.fixture
def copy(tmp_path):
    """A copy of the README to plant mistakes in."""
    path = tmp_path / "README.md"
    path.write_text((REPO / "README.md").read_text())
    return path


def test_committed_readme_is_up_to_date():
    report = scan((REPO / "README.md").read_text(), REFERENCE)
    assert report.markers >= 50 and MOB in report.text
    assert report.differences == [] and report.problems == [], "run `make readme`:\n" + "\n".join(
        report.differences + report.problems)


def test_readme_shows_the_digits_of_the_rendered_markdown():
    """Each marker's text is what its render's Markdown prints on the line of its row and metric."""
    for match in MARKER.finditer((REPO / "README.md").read_text()):
        m = parse(match["spec"], match["text"])
        lines = (REFERENCE / "tables" / m.table / f"{m.scale}.md").read_text().splitlines()
        mine = [line for line in lines if line.startswith(f"| {m.row} | {m.metric} |")]
        assert any(m.text in line for line in mine), (str(m), m.text)


def test_a_planted_wrong_number_is_reported_with_its_marker(copy, capsys):
    copy.write_text(copy.read_text().replace(MOB + "126.45", MOB + "126.46", 1))
    assert main(["--check", "--readme", str(copy), "--renders", str(REFERENCE)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and MOB in out[0] and "'126.46'" in out[0] and "'126.45'" in out[0]
    assert re.match(r"README\.md:\d+: ", out[0])


@pytest.mark.parametrize("spec, says", [
    ('binary-baselines/paper "MoB (K=5000)" mnist nll', 'no row \'MoB (K=5000)\' (row: "independent Bernoulli"'),
    ('binary-baselines/paper "MoB (K=500)" svhn nll', 'no dataset \'svhn\' (dataset: "digits", "mnist")'),
    ('binary-baselines/paper "MoB (K=500)" mnist ssim', 'no metric \'ssim\' (metric: "nll", "bits_per_dim")'),
    ('binary-baselines/paper "MoB (K=500)" mnist nll median', "no column median (columns: row, dataset"),
    ('binary-baselines/smoke "MoB (K=500)" mnist nll', "no render smoke of binary-baselines (scales: paper)"),
    ('binary-tables/paper "MoB (K=500)" mnist nll', "no table binary-tables in"),
    ('ar-mnist/cpu "NADE, 500 sigmoid units" larochelle nll published',
     '2 lines give published 88.86, 88.33; pick one with COLUMN=VALUE (published_id: "ar-mnist-nade-lm11"'),
    ('binary-baselines/paper "MoB (K=500)" mnist', "needs TABLE/SCALE"),
])
def test_a_marker_naming_what_the_render_lacks_is_reported(copy, capsys, spec, says):
    copy.write_text(copy.read_text() + f"\nMoB: <!--n {spec}-->126.45<!--/n-->\n")
    assert main(["--check", "--readme", str(copy), "--renders", str(REFERENCE)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and f"<!--n {spec}-->" in out[0] and says in out[0], out


def test_an_unpaired_or_unsafe_marker_is_reported():
    text = f"a {MOB}126.45\n| x | <!--n ais-validation/paper \"RBM 20 h, CD-25\" mnist log_z_ais_error-->0<!--/n--> |\n"
    problems = scan(text, REFERENCE).problems
    assert len(problems) == 1 and "README.md:1: a marker without its pair" in problems[0]
    assert "'--'" in scan("<!--n a/b \"x--y\" c d-->1<!--/n-->\n", REFERENCE).problems[0]


def test_rewrite_restores_the_renders_value(copy, capsys):
    committed = copy.read_text()
    copy.write_text(committed.replace(MOB + "126.45", MOB + "126.46", 1))
    assert main(["--readme", str(copy), "--renders", str(REFERENCE)]) == 0
    assert copy.read_text() == committed
    assert "1 rewritten" in capsys.readouterr().err


def test_the_committed_renders_are_read_whatever_the_reference_setting():
    """conftest sets GENBENCH_REFERENCE=none: the README still quotes the checkout's reference/."""
    assert readme.default_root() == REFERENCE and readme.default_readme() == REPO / "README.md"
