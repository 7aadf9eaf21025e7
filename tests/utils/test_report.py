"""Plain-text and CSV tables (cjepa/utils/report.py)."""

import csv

from cjepa.utils.report import fmt, table, write_csv


def test_csv_holds_the_tables_cells_at_full_precision(tmp_path):
    """Same header and cells as the printed table; numbers read back exactly and format to the table's text."""
    headers, rows = ["#", "overrides", "loss"], [[0, "a=1 b=x", 0.123456789], [1, "a=2", "-"]]
    write_csv(tmp_path / "t" / "s.csv", rows, headers)
    with open(tmp_path / "t" / "s.csv", newline="") as fh:
        got = list(csv.reader(fh))
    assert got == [headers, ["0", "a=1 b=x", "0.123456789"], ["1", "a=2", "-"]]
    printed = [line.split()[-1] for line in table(rows, headers).splitlines()[2:]]
    assert printed == [fmt(float(got[1][2])), got[2][2]]
