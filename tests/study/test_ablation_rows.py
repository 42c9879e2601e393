"""The defense ablation's rows (paper 001 Table 4's order) and their selection."""
import pytest

from fedleak.study.ablation import ROWS, select_rows


def test_rows_follow_table_4_and_select_by_label_or_position():
    assert len(ROWS) == 24
    assert [r.label for r in ROWS[:3]] == ["none", "P", "C"]
    assert ROWS[-1].label == "DO+DP+GP+C"
    assert select_rows("dp+c,24") == (ROWS[8], ROWS[23])
    with pytest.raises(ValueError, match=r"unknown ablation row 'DP\+X'"):
        select_rows("DP+X")
