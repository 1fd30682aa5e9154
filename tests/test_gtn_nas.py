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
                 "--seeds", "1", "--proxy-learners", "2", "--quiet"]) == 0
    r = read_json(run / "nas" / "nas.json")
    assert r["archs"] == 4 and len(r["rows"]) == 4 and r["proxy_learners"] == 2
    assert {row["spec"]["kind"] for row in r["rows"]} <= {"mlp", "cnn"}
    # each proxy's statistics are those of its own column against full training, recomputed here
    full = [row["full"] for row in r["rows"]]
    half = sorted(range(4), key=lambda i: -full[i])[:2]
    # the one-lr real proxy is the column of the grid's lr that is best summed over architectures
    lrs = list(r["rows"][0]["real_by_lr"])
    one = max(lrs, key=lambda lr: sum(row["real_by_lr"][lr] for row in r["rows"]))
    assert float(one) == r["proxies"]["real_one_lr"]["lr"]
    for row in r["rows"]:
        assert row["real_one_lr"] == row["real_by_lr"][one] and row["real"] == max(row["real_by_lr"].values())
    for name in ("gtn", "real", "real_one_lr"):
        v, p = [row[name] for row in r["rows"]], r["proxies"][name]
        assert same(p["spearman"], spearman(v, full)), name
        assert same(p["spearman_top_half"], spearman([v[i] for i in half], [full[i] for i in half])), name
        assert p["top_k_overlap"] == top_k_overlap(v, full, 1) and r["top_k"] == 1
        assert math.isnan(p["spearman"]) or -1 <= p["spearman"] <= 1
    assert (run / "nas" / "fig_nas.png").is_file() and (run / "nas" / "report.html").is_file()
    assert "Spearman" in capsys.readouterr().out
    assert main(["gtn", "nas", "--gtn", str(run), "--archs", "1"]) == 2


def test_more_proxy_learners_leave_full_training_and_the_first_learners_as_they_were(tmp_path):
    # --proxy-learners only adds learners to the two proxies: full training (the truth) and the
    # seeds shared with a plain run are the same computations
    run = tmp_path / "gtn"
    args = ["gtn", "train", "--quiet", "--no-eval", "--out", str(run)]
    for s in TINY_CLI:
        args += ["--set", s]
    assert main(args) == 0
    base = ["gtn", "nas", "--gtn", str(run), "--archs", "3", "--full-steps", "2", "--seeds", "1", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--out", str(tmp_path / "b"), "--proxy-learners", "3"]) == 0
    a, b = (read_json(tmp_path / d / "nas.json")["rows"] for d in "ab")
    assert [r["full"] for r in a] == [r["full"] for r in b]
    assert any(ra["gtn"] != rb["gtn"] for ra, rb in zip(a, b))   # averaged over 3 learners now
    assert main(base + ["--proxy-learners", "-1"]) == 2
