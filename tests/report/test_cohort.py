"""medcli report cohort: the table carries each subject's numbers, robust outliers are flagged and linked."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from medcli.report.cohort import robust_z

from tests.report._synth import write_cohort


def test_robust_z_ignores_outliers():
    v = np.r_[np.linspace(-1, 1, 99), 1000.0]
    z = robust_z(v)
    assert abs(z[-1]) > 100 and np.all(np.abs(z[:-1]) < 2)  # mean/SD would give the outlier z ~ 10


def test_cohort_page_and_csv(cli, tmp_path):
    paths = write_cohort(tmp_path, 40, outliers={7: 2400.0}, pages=True)
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in paths[20:]) + "\n")
    r = cli("report", "cohort", *map(str, paths[:20]), "--list", str(tmp_path / "list.txt"),
            "-o", str(tmp_path / "cohort.html"), "--csv", str(tmp_path / "cohort.csv"))
    assert r.returncode == 0, r.stderr.decode()
    page = (tmp_path / "cohort.html").read_text()
    rows = list(csv.DictReader(open(tmp_path / "cohort.csv")))
    assert len(rows) == 40 and float(rows[7]["ICV mL"]) == pytest.approx(2400.0)
    # The outlier is listed, linked to its row, and its row links to its page.
    outl = re.search(r'<section aria-labelledby="h-out".*?</section>', page, re.S).group(0)
    assert 'href="#s-7">sub-0007</a>: ICV mL 2,400.0' in outl
    assert outl.count("<li>") >= 1 and "sub-0001" not in outl
    assert re.search(r'<tr id="s-7"><th scope="row"><a href="sub-0007.html">sub-0007</a>', page)
    assert page.count("<svg") == len(rows[0]) - 2  # one histogram per numeric column
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:|#|sub-)', page)


def test_cohort_refuses_non_reports(cli, tmp_path):
    (tmp_path / "x.json").write_text('{"labels": []}')
    r = cli("report", "cohort", str(tmp_path / "x.json"), "-o", str(tmp_path / "c.html"))
    assert r.returncode == 3 and "not a medcli report" in r.stderr.decode() and not (tmp_path / "c.html").exists()
