"""Grokking tickets (Minegishi et al. 2024): the global magnitude mask, the reset to the run's
init, the mask held through training and resume, the controls, bad input, a ticket run directory."""
import json
import math
import re
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
    with pytest.raises(ConfigError, match=f"differs from the step-0 checkpoint in {re.escape(repr(str(d)))} "):
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
    (["{src}", "--seed", "x"], "--seed 'x': expected a whole number >= 0"),
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


def test_small_helpers_keep_their_bounds_counts_and_seeds():
    from groklab.ticket.cli import _fraction, _int
    from groklab.ticket.mask import sparsity
    assert _fraction("1") == 1.0                                  # keep 1 is the whole network
    assert _int("--seed", str(10**9)) == 10**9 and _int("--seed", None) is None
    for bad in ("x", str(10**9 + 1), "-1"):
        with pytest.raises(ConfigError, match=f"--seed '{bad}': expected a whole number >= 0"):
            _int("--seed", bad)
    assert n_kept(10, 0.01) == 1 and n_kept(10, 1.0) == 10
    shapes = {"a": torch.Size([4, 5]), "b": torch.Size([3, 2])}
    torch.manual_seed(0)
    first = random_mask(shapes, 0.5, 5)
    torch.rand(7)                                                 # the global RNG moved on: no effect
    assert all(torch.equal(first[k], random_mask(shapes, 0.5, 5)[k]) for k in shapes)
    assert sparsity({"w": torch.tensor([[True, False, False]])}) == \
        {"w": {"kept": 1, "total": 3, "fraction": 0.333333}}


def test_describe_names_the_count_or_the_dense_control():
    from groklab.ticket.run import describe
    info = {"source": "/r", "step": 40, "keep": 0.4, "control": "none", "kept": 1234, "total": 5678,
            "norm": {"start": 2.0, "init": 3.0}}
    assert describe(info) == ("ticket of /r at step 40: keep 0.4, control none, 1,234 of 5,678 matrix entries; "
                              "norm 2 (init 3)")
    assert "control same-norm, dense (same-norm); norm" in describe(info | {"control": "same-norm", "kept": None})


def test_plan_checks_its_own_input_and_says_where_everything_came_from(src, tmp_path):
    for keep in (0, 1.5, "0.5", -0.1):
        with pytest.raises(ConfigError, match=r"^--keep .*: expected a fraction in \(0, 1\]$"):
            plan(src, keep)
    with pytest.raises(ConfigError, match="^--control 'snip': allowed: random, same-norm$"):
        plan(src, 0.4, control="snip")
    assert plan(src, 1.0)[3]["kept"] == plan(src, 1.0)[3]["total"]
    have = list_checkpoints(src)
    _, _, mask, info = plan(src, 0.4, step=have[0], control="random")
    assert info["step"] == have[0] and info["seed"] == 0 and info["source"] == str(src.resolve())
    assert info["threshold"] == magnitude_mask(load_checkpoint(src, have[0])[0], 0.4)[1]
    assert info["init"] == "rebuilt from config.json (no step-0 checkpoint to compare)"
    assert set(info["norm"]) == {"init", "ticket", "start", "trained"} and info["norm"]["trained"] > 0
    assert set(info["sparsity"]) == set(mask) and info["sparsity"][next(iter(mask))]["total"] > 0
    with pytest.raises(ConfigError, match=rf"^--from 7: no checkpoint at step 7 in {str(src)!r}; checkpoints: "
                                          + ", ".join(map(str, have)) + "$"):
        plan(src, 0.4, step=7)
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    (d / "checkpoints" / f"step_{have[0]:08d}" / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(ConfigError, match=rf"^checkpoint step {have[0]} in {str(d)!r} is unreadable: \w+Error$"):
        plan(d, 0.4, step=have[0])
    shutil.rmtree(d / "checkpoints")
    with pytest.raises(ConfigError, match=rf"^--from 1: no checkpoint at step 1 in {str(d)!r}; checkpoints: none$"):
        plan(d, 0.4, step=1)
    with pytest.raises(ConfigError, match=rf"^{str(tmp_path / 'nope')!r}: no such run directory$"):
        plan(tmp_path / "nope", 0.4)
    cfg = json.loads((src / "config.json").read_text())
    cfg["model"]["hidden"] = [24, 32]                             # a model the checkpoints do not fit
    (d / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(src / "checkpoints", d / "checkpoints")
    with pytest.raises(ConfigError, match=rf"^the checkpoint in {str(d)!r} does not fit the model config.json"):
        plan(d, 0.4)


def test_cli_passes_seed_and_quiet_and_prints_the_result(src, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["ticket", str(src), "--keep", "0.5", "--control", "random", "--seed", "5", "--set",
                 "train.steps=20", "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    info = json.loads((out / "ticket.json").read_text())
    assert info["seed"] == 5 and info["control"] == "random"
    assert "step" in err                                          # no --quiet: the progress bar
    s = json.loads((out / "summary.json").read_text())
    assert f"val ≥ 0.9 at {s['generalized_at']['0.9']} · val ≥ 0.99 at {s['generalized_at']['0.99']}" in printed
    assert printed.splitlines()[-1] == f"report: {out / 'report.html'}"


@pytest.mark.parametrize("status, code", [("completed", 0), ("early_stopped", 0), ("interrupted", 130),
                                          ("nan", 3), ("failed", 1)])
def test_cli_exit_code_follows_the_runs_status(tmp_path, monkeypatch, capsys, status, code):
    import groklab.ticket.run as R
    (tmp_path / "ticket.json").write_text(json.dumps({"source": "s", "step": 1, "keep": 0.4, "control": "none",
                                                      "kept": 1, "total": 2, "norm": {"start": 1, "init": 1}}))
    summary = {"status": status, "steps_done": 1, "wall_seconds": 0.1, "final_train_acc": 1.0,
               "final_val_acc": 0.5, "generalized_at": {"0.9": 12, "0.99": 34}}
    calls = []
    monkeypatch.setattr(R, "ticket", lambda *a, **k: calls.append((a, k)) or
                        groklab.train.loop.Run(tmp_path, None, summary, None, None))
    assert main(["ticket", "src", "--out", str(tmp_path / "o"), "--quiet"]) == code
    assert calls == [(("src", 0.4, str(tmp_path / "o")), {"step": None, "control": "none", "seed": 0, "overrides": [],
                                                         "progress": False})]  # the defaults --help states
    with pytest.raises(SystemExit):
        main(["ticket", "src", "--quiet"])                       # --out is required
    assert "val ≥ 0.9 at 12 · val ≥ 0.99 at 34" in capsys.readouterr().out


def test_the_api_defaults_start_from_the_masked_init_and_a_failed_start_leaves_nothing(src, tmp_path, capsys,
                                                                                       monkeypatch):
    import groklab.ticket.run as R
    from groklab.runs.lock import DirectoryLocked, dir_lock
    r = ticket(src, 0.4, tmp_path / "api", overrides=["train.steps=2"], report=False)
    info = json.loads((r.dir / "ticket.json").read_text())
    assert info["control"] == "none" and info["seed"] == 0 and capsys.readouterr().err == ""  # no bar
    _, start, _, _ = plan(src, 0.4)
    assert r.metrics[0]["step"] == 0 and r.metrics[0]["weight_norm"] == pytest.approx(total_norm(start), rel=1e-6)
    assert R.resume_setup(src) is None                            # an ordinary run has no mask to hold
    _, rstart, _, _ = plan(src, 0.4, control="random", seed=5)
    r = ticket(src, 0.4, tmp_path / "rnd", control="random", seed=5, overrides=["train.steps=2"], report=False)
    assert r.metrics[0]["weight_norm"] == pytest.approx(total_norm(rstart), rel=1e-6)
    with pytest.raises(ConfigError, match="^--out '': expected a directory path$"):
        ticket(src, 0.4, "")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for taken in (tmp_path / "api", tmp_path / "link"):
        with pytest.raises(ConfigError,
                           match=f"^output directory {str(taken)!r} already exists; choose another --out$"):
            ticket(src, 0.4, taken)
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(sorted(groklab.config.RESUMABLE)) + "$"):
        ticket(src, 0.4, tmp_path / "x", overrides=["optim.lr=1"])

    def boom(cfg, out, **kw):
        with pytest.raises(DirectoryLocked):                      # the new directory is held while it trains
            with dir_lock(out):
                pass
        if cfg.train.steps == 3:                                  # a checkpoint was written: it is kept
            (out / "checkpoints" / "step_00000001").mkdir(parents=True)
        raise RuntimeError("boom")
    monkeypatch.setattr(R, "train", boom)
    for steps, kept in ((2, False), (3, True)):
        with pytest.raises(RuntimeError, match="boom"):
            ticket(src, 0.4, tmp_path / f"f{steps}", overrides=[f"train.steps={steps}"], report=False)
        assert (tmp_path / f"f{steps}").exists() == kept
