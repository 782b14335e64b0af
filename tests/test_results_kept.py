"""The evaluation reports kept in ``docs/results`` (the runs behind the README's results table)
and ``docs/variants/results`` (runs of unshipped stage variants) still load as reports, so
``exe-coder compare`` rebuilds their tables on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from exe_coder.evaluate.compare import compare, load_reports

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("folder", ["results", "variants/results"])
def test_every_kept_report_loads_and_carries_its_run_card(folder):
    files = sorted((DOCS / folder).rglob("*.json"))
    loaded = load_reports(files)  # a JSON that is not a valid report is an error, named
    assert len(loaded) == len(files) >= 2
    for path, report in loaded:
        assert report.run_card is not None and report.run_card.run_name, path
        stage = path.parent.parent.name
        assert path.name == f"{stage}_{report.split}.json", path  # as run-stage names them
    rows, _, _ = compare([DOCS / folder], "all")
    assert len(rows) == len(files)
