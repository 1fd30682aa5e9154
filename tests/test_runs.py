"""Runs end to end: a run that really groks, resume exactness, NaN stops, Ctrl-C, run directories."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import groklab
from groklab.cli import main
from groklab.runs.checkpoint import list_checkpoints, load_weights
from groklab.runs.rundir import read_jsonl

# x+y mod 23 with 60 % of the table: a small Nanda transformer memorises in ~70 steps and
# generalizes ~2,000 steps later — grokking in about ten seconds on a 2-core CPU.
GROKS = ["task.p=23", "task.frac=0.6", "model.d_model=64", "model.d_mlp=128", "optim.lr=3e-3",
         "train.steps=4000", "train.stop_threshold=0.99", "train.patience=50"]
TINY = ["task.p=13", "task.frac=0.5", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
        "train.eval_every=10"]


def test_a_small_run_really_groks_and_writes_its_run_directory(tmp_path):
    r = groklab.run(groklab.resolve("default", overrides=GROKS), out=tmp_path / "g")
    s = r.summary
    assert s["phase"] == "grokking"
    assert s["memorized_at"]["0.99"] < 300
    assert s["generalized_at"]["0.99"] is not None
    assert s["generalized_at"]["0.9"] - s["memorized_at"]["0.9"] > 1000   # a real delay
    assert s["final_val_acc"] >= 0.99 and s["status"] == "early_stopped"
    for key in ("memorized_at", "generalized_at"):
        assert set(s[key]) >= {"0.5", "0.9", "0.95", "0.99"}
    for key in ("final_train_acc", "final_val_acc", "steps_done", "wall_seconds", "phase"):
        assert key in s
    d = r.dir
    for f in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "report.html"):
        assert (d / f).is_file(), f
    rec = read_jsonl(d / "metrics.jsonl")[5]
    assert set(rec) >= {"step", "train_loss", "val_loss", "train_acc", "val_acc", "lr", "weight_norm"}
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["task"]["p"] == 23 and cfg["optim"]["lr"] == 3e-3 and cfg["model"]["d_model"] == 64
    html = (d / "report.html").read_text()
    assert "data:image/png;base64," in html and "grokking" in html     # self-contained
    steps = list_checkpoints(d)
    assert steps[-1] == s["steps_done"] and len(steps) > 5 and steps[0] == 1   # log-spaced + last
    assert set(load_weights(d / "checkpoints" / f"step_{steps[-1]:08d}")) >= {"W_E", "W_U"}


# a constant schedule after warm-up: a cosine or linear decay is shaped by train.steps itself,
# so extending the budget changes the learning rates of the steps already taken.
RESUME = TINY + ["train.batch_size=32", "model.dropout=0.1", "accel.grokfast=ema", "optim.warmup=20"]


def _metrics(d):
    return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(d / "metrics.jsonl")]


def test_resume_continues_exactly_as_one_uninterrupted_run(tmp_path):
    """200 steps, then a resume to 400, equal 400 in one go: weights and every logged number.
    Minibatches, dropout, warm-up and a Grokfast filter make every piece of state count."""
    groklab.run(groklab.resolve("default", overrides=RESUME + ["train.steps=400"]),
                out=tmp_path / "one", report=False)
    cfg = groklab.resolve("default", overrides=RESUME + ["train.steps=400"])
    cfg.train.steps = 200                      # the same recipe, stopped half way
    groklab.run(cfg, out=tmp_path / "two", report=False)
    assert main(["run", "--resume", str(tmp_path / "two"), "--set", "train.steps=400", "--quiet"]) == 0
    w1 = load_file(str(tmp_path / "one/checkpoints/step_00000400/model.safetensors"))
    w2 = load_file(str(tmp_path / "two/checkpoints/step_00000400/model.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    assert _metrics(tmp_path / "one") == _metrics(tmp_path / "two")
    s1 = json.loads((tmp_path / "one/summary.json").read_text())
    s2 = json.loads((tmp_path / "two/summary.json").read_text())
    measured = ("wall_seconds", "cost", "cost_at")  # clocks and energy differ; FLOPs must not
    for s in (s1, s2):                             # the forecast's own clock differs too
        s["forecast"].pop("seconds")
    assert {k: v for k, v in s1.items() if k not in measured} == \
           {k: v for k, v in s2.items() if k not in measured}
    assert s1["cost"]["flops"] == s2["cost"]["flops"] > 0
    assert {t: c and c["flops"] for t, c in s1["cost_at"].items()} == \
           {t: c and c["flops"] for t, c in s2["cost_at"].items()}
    assert json.loads((tmp_path / "two/config.json").read_text())["train"]["steps"] == 400


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A learning rate of 1e6 with SGD blows the weights up within a few steps."""
    out = tmp_path / "nan"
    code = main(["run", "--set", "task.p=13", "--set", "optim.name=sgd", "--set", "optim.lr=1e6",
                 "--set", "optim.warmup=0", "--set", "train.steps=500", "--set", "model.d_model=16",
                 "--set", "model.n_heads=2", "--set", "train.n_checkpoints=20", "--quiet",
                 "--out", str(out)])
    s = json.loads((out / "summary.json").read_text())
    assert code == 3 and s["status"] == "nan"
    printed = capsys.readouterr().out
    assert "loss is" in printed and "Last good checkpoint" in printed
    ckpts = list_checkpoints(out)
    assert ckpts and ckpts[-1] < 500
    for v in load_weights(out / "checkpoints" / f"step_{ckpts[-1]:08d}").values():
        assert torch.isfinite(v).all()          # the kept checkpoint is a good one


def test_show_prints_the_summary(tmp_path, capsys):
    groklab.run(groklab.resolve("default", overrides=TINY + ["train.steps=30"]), out=tmp_path / "s", report=False)
    assert main(["show", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 30
    assert main(["show", str(tmp_path / "nothing")]) == 2
    capsys.readouterr()
    s = json.loads((tmp_path / "s" / "summary.json").read_text())    # a diverged run writes NaN
    s["final_train_loss"] = float("nan")
    (tmp_path / "s" / "summary.json").write_text(json.dumps(s))
    assert main(["show", str(tmp_path / "s")]) == 0
    assert "NaN" in capsys.readouterr().out


def test_ctrl_c_leaves_a_resumable_run(tmp_path):
    out = tmp_path / "c"
    args = [sys.executable, "-m", "groklab.cli", "run", "--quiet", "--out", str(out), "--set",
            "train.steps=100000", "--set", "train.checkpoint_every=50"]
    args += [a for kv in TINY for a in ("--set", kv)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list_checkpoints(out) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "interrupted"
    stopped = s["steps_done"]
    assert list_checkpoints(out)[-1] == stopped
    assert main(["run", "--resume", str(out), "--set", f"train.steps={stopped + 20}", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps_done"] == stopped + 20


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["--preset", "nope"], "unknown preset 'nope'; presets: "),
    (["--set", "optim.nope=1"], "unknown key 'optim.nope'; valid optim.* keys: name, lr"),
    (["--set", "nope.lr=1"], "unknown key 'nope.lr'"),
    (["--set", "task.name=cifar"], "task.name='cifar' is not one of: modular, permutation"),
    (["--set", "task.op=x**y"], "unknown task.op 'x**y'; modular ops are: x+y"),
    (["--set", "optim.name=lion"], "optim.name='lion' is not one of: adamw, adam, sgd"),
    (["--set", "task.frac=1.5"], "task.frac=1.5 is out of range; allowed: (0, 1)"),
    (["--set", "task.frac=0"], "task.frac=0.0 is out of range; allowed: (0, 1)"),
    (["--set", "task.p=1"], "task.p=1 is out of range; allowed: [2, 1000]"),
    (["--set", "optim.lr=-0.1"], "optim.lr=-0.1 is out of range; allowed: (0, 1,000,000]"),
    (["--set", "train.steps=0"], "train.steps=0 is out of range; allowed: [1, 1,000,000,000]"),
    (["--set", "task.op=x/y", "--set", "task.p=96"], "task.p=96 is not prime; 'x/y' needs a prime"),
    (["--set", "train.steps=ten"], "train.steps='ten': expected an integer"),
    (["--config", "missing.toml"], "config file 'missing.toml' does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_directory(in_tmp, capsys, args, needle):
    assert main(["run", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not (in_tmp / "runs").exists()


def test_an_existing_out_directory_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["run", "--quiet", "--out", str(out), *[a for kv in TINY for a in ("--set", kv)]]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(groklab.ConfigError, match="already exists"):
        groklab.run(groklab.resolve("default", overrides=TINY), out=out)


def test_a_toml_config_and_dotted_overrides_apply_in_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "power"\n[task]\np = 31\n[optim]\nlr = 0.002\n')
    cfg = groklab.resolve(None, f, ["optim.lr=0.005"])
    assert (cfg.task.op, cfg.task.p, cfg.optim.lr, cfg.model.n_layers) == ("x/y", 31, 0.005, 2)


def test_presets_list_every_setting_and_their_paper(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "nanda", "power", "power-adam", "grokfast-baseline", "prieto", "omnigrok-mnist",
                 "deep-mnist"):
        assert f"\n{name}\n" in f"\n{out}"
    assert "arXiv 2301.05217" in out and "optim.wd = " in out and "train.eval_every = " in out


def test_a_division_run_resumes(tmp_path):
    """x/y's task is built from a mask of the nonzero divisors: resume rebuilds it for real."""
    over = ["task.op=x/y", "task.p=7", "train.steps=5", "model.d_model=8", "model.n_heads=1",
            "model.d_mlp=8", "train.eval_every=5", "train.forecast=false"]
    groklab.run(groklab.resolve("default", overrides=over), out=tmp_path / "r", report=False)
    r = groklab.resume(tmp_path / "r", overrides=["train.steps=10"], report=False)
    assert r.summary["steps_done"] == 10


def test_the_forecast_model_loads_before_the_runs_clock_starts(tmp_path, monkeypatch):
    """Its first load (importing XGBoost, ~1 s) is set-up, like the cost meter's hardware probe:
    it must not count in the run's wall_seconds or its records' time (benchmarks/run_overhead.py)."""
    from groklab.forecast import model as fm
    from groklab.train import loop
    events, load, build = [], fm.default_model, loop.Trainer.build.__func__

    def default_model():
        events.append("forecast model")
        return load()

    def build_and_start_clock(cls, cfg):
        tr = build(cls, cfg)
        events.append("clock starts")
        return tr
    monkeypatch.setattr(fm, "default_model", default_model)
    monkeypatch.setattr(loop.Trainer, "build", classmethod(build_and_start_clock))
    groklab.run(groklab.resolve("default", overrides=TINY + ["train.steps=10"]), out=tmp_path / "f",
                report=False)
    assert events[:2] == ["forecast model", "clock starts"]
    assert (tmp_path / "f" / "forecast.jsonl").is_file()
    events.clear()
    groklab.run(groklab.resolve("default", overrides=TINY + ["train.steps=10", "train.forecast=false"]),
                out=tmp_path / "off", report=False)
    assert events == ["clock starts"]                      # not loaded at all when off


def test_codecarbons_lazy_import_happens_before_the_runs_clock_starts(tmp_path):
    """CodeCarbon's first ``start_task`` imports its emissions module (requests, urllib3:
    50-180 ms); that is set-up, so it is imported when the meter opens, before the clock. A fresh
    process, so that no other test has imported it already."""
    code = f"""
import sys, groklab
from groklab.train import loop
seen, build = [], loop.Trainer.build.__func__
def build_and_start_clock(cls, cfg):
    seen.append("codecarbon.core.emissions" in sys.modules)
    return build(cls, cfg)
loop.Trainer.build = classmethod(build_and_start_clock)
cfg = groklab.resolve("default", overrides={TINY + ["train.steps=5", "train.forecast=false"]!r})
run = groklab.run(cfg, out={str(tmp_path / "r")!r}, report=False)
print(seen[0], run.summary["cost"]["method"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[-1] != "estimated":
        pytest.skip(f"this machine measures energy with {out[-1]}, not CodeCarbon's estimate")
    assert out[-2] == "True"


def test_a_run_evaluates_only_every_eval_every_steps_and_passes_over_the_training_set_once(tmp_path,
                                                                                          monkeypatch):
    """The full-batch step's own forward stands in for the training set's evaluation, so a run
    of 30 steps evaluating every 10 passes over the validation set 4 times (steps 0, 10, 20 and
    the last) and over the training set once (the last, after the final update)."""
    from groklab.train import loop
    passes, evaluate_all = [], loop.evaluate_all

    def counted(model, x, y, loss_fn):
        passes.append(len(y))
        return evaluate_all(model, x, y, loss_fn)
    monkeypatch.setattr(loop, "evaluate_all", counted)
    r = groklab.run(groklab.resolve("default", overrides=TINY + ["train.steps=30", "train.forecast=false"]),
                    out=tmp_path / "e", report=False)
    n_train, n_val = len(r.task.y_train), len(r.task.y_val)
    assert [m["step"] for m in r.metrics] == [0, 10, 20, 30]
    assert sorted(passes) == sorted([n_val] * 4 + [n_train])
