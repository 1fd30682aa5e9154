"""Grokking tickets (Minegishi et al. 2024): the global magnitude mask, the reset to the run's
init, the mask held through training and resume, the controls, bad input, a ticket run directory."""
import json
import math
import shutil

import pytest
import torch

import groklab
from groklab.cli import main
from groklab.config import ConfigError
from groklab.models import build_model
from groklab.runs.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from groklab.runs.rundir import read_config
from groklab.tasks import build_task
from groklab.ticket.mask import magnitude_mask, matrix_norm, n_kept, random_mask, same_norm
from groklab.ticket.run import plan, ticket

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [("task.p", 11), ("task.frac", 0.5), ("model.hidden", "32,32"), ("train.steps", 120),
        ("train.eval_every", 20), ("train.forecast", False), ("optim.lr", 3e-3), ("optim.wd", 1.0)]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A tiny trained prieto MLP run (no report, no forecast)."""
    out = tmp_path_factory.mktemp("src") / "run"
    groklab.run(groklab.resolve("prieto", overrides=TINY), out=out, report=False)
    return out


def total_norm(w: dict) -> float:
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in w.values()))


def test_one_global_threshold_keeps_exactly_the_top_fraction():
    w = {"a": torch.tensor([[1.0, -5.0], [3.0, 0.5]]), "b": torch.tensor([[-4.0, 2.0, 0.1]]),
         "bias": torch.tensor([9.0, 9.0])}
    mask, thr = magnitude_mask(w, 0.4)           # round(0.4 × 7) = 3 of the 7 matrix entries
    assert set(mask) == {"a", "b"}               # vectors are never masked
    assert mask["a"].tolist() == [[False, True], [True, False]]
    assert mask["b"].tolist() == [[True, False, False]]  # per tensor it would keep 2 here, not 1
    assert thr == 3.0
    assert all(m.all() for m in magnitude_mask(w, 1.0)[0].values())
    ties = {"a": torch.ones(2, 5)}                # ties at the threshold: the count is still exact
    assert int(magnitude_mask(ties, 0.3)[0]["a"].sum()) == 3


def test_reset_is_the_runs_init_on_kept_entries_and_zero_elsewhere(src):
    cfg, start, mask, info = plan(src, 0.4)
    torch.manual_seed(cfg.train.seed)
    init = build_model(cfg, build_task(cfg.task)).state_dict()  # what Trainer.build makes
    last = list_checkpoints(src)[-1]
    want, _ = magnitude_mask(load_checkpoint(src, last)[0], 0.4)
    assert info["step"] == last and set(mask) == set(want)
    for k, m in mask.items():
        assert torch.equal(m, want[k])
        assert torch.equal(start[k][m], init[k][m]) and (start[k][~m] == 0).all()
    assert info["kept"] == n_kept(info["total"], 0.4)


def test_init_is_checked_against_a_step0_checkpoint(src, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(src, d)
    cfg = read_config(d)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, build_task(cfg.task))
    save_checkpoint(d, 0, model, {})
    assert plan(d, 0.4)[3]["init"].endswith("equal to the step-0 checkpoint")
    with torch.no_grad():
        model.layers[1].weight[0, 0] += 1
    save_checkpoint(d, 0, model, {})
    with pytest.raises(ConfigError, match="differs from the step-0 checkpoint"):
        plan(d, 0.4)


def test_random_control_same_count_seeded(src):
    _, _, tmask, _ = plan(src, 0.3)
    _, start, rmask, info = plan(src, 0.3, control="random", seed=1)
    count = lambda m: sum(int(v.sum()) for v in m.values())
    assert count(rmask) == count(tmask) == info["kept"]
    assert any(not torch.equal(rmask[k], tmask[k]) for k in tmask)
    assert all(torch.equal(rmask[k], plan(src, 0.3, control="random", seed=1)[2][k]) for k in rmask)
    shapes = {k: v.shape for k, v in rmask.items()}
    assert any(not torch.equal(random_mask(shapes, 0.3, 2)[k], rmask[k]) for k in rmask)
    assert all((start[k][~m] == 0).all() for k, m in rmask.items())


def test_same_norm_control_has_the_tickets_norm(src):
    _, tstart, _, _ = plan(src, 0.4)
    _, start, mask, info = plan(src, 0.4, control="same-norm")
    assert mask is None and info["kept"] is None
    assert total_norm(start) == pytest.approx(total_norm(tstart), rel=1e-6)
    assert matrix_norm(start) == pytest.approx(info["norm"]["ticket"], rel=1e-6)
    w = {"a": torch.tensor([[3.0, 4.0]]), "b": torch.tensor([1.0])}
    scaled = same_norm(w, {"a": torch.tensor([[False, True]])})
    assert torch.allclose(scaled["a"], torch.tensor([[2.4, 3.2]])) and torch.equal(scaled["b"], w["b"])


def test_ticket_run_holds_the_mask_and_is_an_ordinary_run_directory(src, tmp_path, capsys):
    out = tmp_path / "ticket"
    assert main(["ticket", str(src), "--keep", "0.3", "--set", "train.steps=200", "--out", str(out),
                 "--quiet"]) == 0
    assert "keep 0.3" in capsys.readouterr().out
    for f in ("config.json", "metrics.jsonl", "summary.json", "report.html", "ticket.json",
              "ticket_mask.safetensors"):
        assert (out / f).is_file(), f
    cfg, scfg = read_config(out), read_config(src)
    assert cfg.train.steps == 200 and cfg.model == scfg.model and cfg.optim == scfg.optim
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["steps_done"] == 200
    info = json.loads((out / "ticket.json").read_text())
    assert info["keep"] == 0.3 and info["control"] == "none" and info["step"] == list_checkpoints(src)[-1]
    _, start, mask, _ = plan(src, 0.3)

    def held(d):
        for step in list_checkpoints(d):
            w, _ = load_checkpoint(d, step)
            for k, m in mask.items():
                assert (w[k][~m] == 0).all(), (step, k)       # exactly 0, every checkpoint
        return w
    w = held(out)
    assert any(not torch.equal(w[k][m], start[k][m]) for k, m in mask.items())  # the kept ones trained
    assert main(["run", "--resume", str(out), "--set", "train.steps=260", "--quiet"]) == 0
    assert list_checkpoints(out)[-1] == 260
    held(out)                                  # a resumed ticket keeps its mask


def test_same_norm_control_trains_dense(src, tmp_path):
    r = ticket(src, 0.4, tmp_path / "sn", control="same-norm", overrides=["train.steps=40"], report=False)
    assert r.summary["status"] == "completed"
    assert not (r.dir / "ticket_mask.safetensors").exists()
    assert json.loads((r.dir / "ticket.json").read_text())["control"] == "same-norm"


@pytest.mark.parametrize("argv, msg", [
    (["{missing}", "--keep", "0.4"], "no such run directory"),
    (["{src}", "--keep", "0"], "--keep '0': expected a fraction in (0, 1]"),
    (["{src}", "--keep", "1.5"], "--keep '1.5'"),
    (["{src}", "--keep", "nan"], "--keep 'nan'"),
    (["{src}", "--keep", "lots"], "--keep 'lots'"),
    (["{src}", "--control", "snip"], "--control 'snip': allowed: random, same-norm"),
    (["{src}", "--from", "7"], "--from 7: no checkpoint at step 7"),
    (["{src}", "--from", "-1"], "--from '-1'"),
    (["{src}", "--set", "optim.lr=1"], "ticket --set optim.lr: the recipe is the source run's"),
    (["{src}", "--out", "{src}"], "already exists"),
    (["{src}", "--out", ""], "--out '': expected a directory path"),
    (["{src}", "--out", "{afile}/x"], "Not a directory"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(src, tmp_path, capsys, argv, msg):
    out = tmp_path / "new"
    (tmp_path / "afile").write_text("mine")
    argv = [a.format(src=src, missing=tmp_path / "nope", afile=tmp_path / "afile") for a in argv]
    before = sorted(p.name for p in src.rglob("*"))
    code = main(["ticket", *argv, *([] if "--out" in argv else ["--out", str(out)]), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and msg in err and len(err.splitlines()) == 1, err
    assert not out.exists() and sorted(p.name for p in src.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
