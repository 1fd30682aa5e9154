"""Rank statistics of the NAS comparison, and a tiny end-to-end `groklab gtn nas`."""
import math

import pytest
import torch

from groklab.cli import main
from groklab.gtn.nas import ranks, spearman, top_k_overlap
from groklab.runs.rundir import read_json

from gtn_tiny import one_thread  # noqa: F401
from test_gtn_meta import TINY_CLI


def test_spearman_known_answers():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # monotone transforms do not change it; textbook value 1 - 6 Σd² / (n(n²-1)) for [1,2,3,4,5] vs [2,1,4,3,5]
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert torch.equal(ranks(torch.tensor([3.0, 1.0, 3.0])), torch.tensor([1.5, 0.0, 1.5], dtype=torch.float64))


def same(a: float, b: float) -> bool:
    """Equal, or both NaN (a constant column has no rank correlation)."""
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_spearman_of_a_constant_column_is_nan():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1, 2, 3], [0, 0, 0]))


def test_top_k_overlap():
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 4, 3, 2, 1], 2) == 1.0
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], 2) == 0.0
    assert top_k_overlap([5, 4, 3, 2, 1], [5, 1, 4, 2, 3], 2) == 0.5


def test_cli_nas_end_to_end(tmp_path, capsys):
    run = tmp_path / "gtn"
    args = ["gtn", "train", "--quiet", "--no-eval", "--out", str(run)]
    for s in TINY_CLI:
        args += ["--set", s]
    assert main(args) == 0
    assert main(["gtn", "nas", "--gtn", str(run), "--archs", "4", "--full-steps", "3",
                 "--seeds", "1", "--quiet"]) == 0
    r = read_json(run / "nas" / "nas.json")
    assert r["archs"] == 4 and len(r["rows"]) == 4
    assert {row["spec"]["kind"] for row in r["rows"]} <= {"mlp", "cnn"}
    # each proxy's statistics are those of its own column against full training, recomputed here
    full = [row["full"] for row in r["rows"]]
    half = sorted(range(4), key=lambda i: -full[i])[:2]
    for name in ("gtn", "real"):
        v, p = [row[name] for row in r["rows"]], r["proxies"][name]
        assert same(p["spearman"], spearman(v, full)), name
        assert same(p["spearman_top_half"], spearman([v[i] for i in half], [full[i] for i in half])), name
        assert p["top_k_overlap"] == top_k_overlap(v, full, 1) and r["top_k"] == 1
        assert math.isnan(p["spearman"]) or -1 <= p["spearman"] <= 1
    assert (run / "nas" / "fig_nas.png").is_file() and (run / "nas" / "report.html").is_file()
    assert "Spearman" in capsys.readouterr().out
    assert main(["gtn", "nas", "--gtn", str(run), "--archs", "1"]) == 2
