"""Rank statistics of the NAS comparison, and a tiny end-to-end `groklab gtn nas`."""
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
    for name in ("gtn", "real"):
        assert -1 <= r["proxies"][name]["spearman"] <= 1 or r["proxies"][name]["spearman"] != r["proxies"][name]["spearman"]
    assert (run / "nas" / "fig_nas.png").is_file() and (run / "nas" / "report.html").is_file()
    assert "Spearman" in capsys.readouterr().out
    assert main(["gtn", "nas", "--gtn", str(run), "--archs", "1"]) == 2
