"""What a run cost (runs.cost): FLOPs against hand counts, the energy method label, CO₂, cost_at."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

import groklab
from groklab.cli import main
from groklab.config import ConfigError
from groklab.models.mlp import MLPNet
from groklab.models.transformer import Transformer
from groklab.runs import cost as C

TINY = ["model.arch=mlp", "model.hidden=16,16", "task.p=13", "task.frac=0.5", "train.steps=40",
        "train.eval_every=10", "train.n_checkpoints=0", "optim.lr=1e-2"]
HAS_CC = importlib.util.find_spec("codecarbon") is not None


pytestmark = pytest.mark.usefixtures("one_thread")


def test_mlp_step_flops_match_a_hand_count():
    # one-hot x ++ y is a gather (0 FLOPs); then 6->4 and 4->V matrix products, 2·m·n·k each;
    # backward computes the input and the weight gradient of each: 2x the forward
    B, V = 5, 7
    model = MLPNet(V, [6, 4], n_tokens=V)
    x, y = torch.randint(0, V, (B, 3)), torch.randint(0, V, (B,))
    fwd = 2 * B * (6 * 4 + 4 * V)
    got = C.count_flops(model, F.cross_entropy, (x, y), (x[:3], y[:3]), (x, y))
    assert got == {"step": 3 * fwd, "eval_val": 3 * fwd // B, "eval_train": fwd}


def test_one_layer_transformer_step_flops_match_a_hand_count():
    B, S, d, H, d_mlp, V = 5, 3, 8, 2, 16, 7
    model = Transformer(V, V, n_ctx=S, d_model=d, n_heads=H, d_mlp=d_mlp, fast=False)
    x, y = torch.randint(0, V, (B, S)), torch.randint(0, V, (B,))
    fwd = (2 * B * S * d * d * 3          # Q, K, V projections
           + 2 * B * S * S * d * 2        # scores q·k and pattern·v (H heads of d/H)
           + 2 * B * S * d * d            # W_O
           + 2 * B * S * d * d_mlp * 2    # W_in, W_out
           + 2 * B * d * V)               # W_U at the answer position
    got = C.count_flops(model, F.cross_entropy, (x, y), (x, y))
    assert got["step"] == 3 * fwd and got["eval_val"] == fwd
    fast = Transformer(V, V, n_ctx=S, d_model=d, n_heads=H, d_mlp=d_mlp, fast=True)
    assert C.count_flops(fast, F.cross_entropy, (x, y), (x, y))["step"] < got["step"]


def test_train_pass_steps_follow_the_loop():
    cfg = groklab.resolve("default", overrides=TINY)
    recs = [{"step": s} for s in (0, 10, 20)]
    assert C.train_pass_steps(cfg, 84, recs, "completed") == {20}
    assert C.train_pass_steps(cfg, 84, recs, "early_stopped") == set()
    cfg.train.batch_size = 32
    assert C.train_pass_steps(cfg, 84, recs, "completed") == {0, 10, 20}
    cfg.train.batch_size = 0                         # full batch, but the step's forward is bf16
    cfg.train.autocast = "bfloat16"
    assert C.train_pass_steps(cfg, 84, recs, "completed") == {0, 10, 20}
    cfg.train.autocast = "off"                       # a model whose own metrics need a pass
    assert C.train_pass_steps(cfg, 84, recs, "completed", model=type("M", (), {"metrics": None})()) == {0, 10, 20}


def test_flops_are_counted_once_per_run_shape_not_per_step(tmp_path, monkeypatch):
    """FlopCounterMode is slow (a traced step on a meta copy of the model): a run counts one
    step and one evaluation after its loop and multiplies, and a second run of the same shape
    (a race's next seed) reuses the count."""
    calls, count = [], C.count_flops
    monkeypatch.setattr(C, "_FLOPS", {})
    monkeypatch.setattr(C, "count_flops", lambda *a, **k: calls.append(1) or count(*a, **k))
    cfg = groklab.resolve("default", overrides=TINY + ["train.forecast=false"])
    r = groklab.run(cfg, out=tmp_path / "a", report=False)
    assert len(calls) == 1 and r.summary["cost"]["flops"] > 40 * r.summary["cost"]["flops_per_step"] > 0
    cfg.train.seed = 1
    groklab.run(cfg, out=tmp_path / "b", report=False)
    assert len(calls) == 1


def test_rapl_is_a_measurement_and_wraps(tmp_path, monkeypatch):
    zone = tmp_path / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True)  # a sub-zone: not counted twice
    (zone / "energy_uj").write_text("999000000")
    (zone / "max_energy_range_uj").write_text("1000000000")
    (zone / "intel-rapl:0:0" / "energy_uj").write_text("5")
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path)
    m = C.CostMeter("WORLD", "cpu").begin()
    assert m.source.method == "rapl"
    (zone / "energy_uj").write_text("1000000")  # wrapped: 1 J to the top, 1 J after
    m.log(0, {"step": 0, "time": 0.1})
    cost, cost_at = m.finish({"step": 10, "eval_val": 1, "eval_train": 1}, [{"step": 0, "time": 0.1}],
                             {0}, 0, 0.1, {"0.9": 0, "0.99": None})
    assert cost["method"] == "rapl" and cost["joules"] == pytest.approx(2.0)
    assert cost["co2_g"] == pytest.approx(2.0 / 3.6e6 * 475, rel=1e-5)
    assert cost_at["0.9"]["joules"] == pytest.approx(2.0) and cost_at["0.99"] is None


def test_without_rapl_or_codecarbon_joules_say_why(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "codecarbon" else real(n, *a))
    m = C.CostMeter("WORLD", "cpu").begin()
    cost, _ = m.finish({"step": 1, "eval_val": 1, "eval_train": 0}, [], set(), 0, 0.0, {})
    assert cost["joules"] is None and cost["method"] is None and cost["co2_g"] is None
    assert "RAPL" in cost["energy_missing"] and "groklab[energy]" in cost["energy_missing"]


@pytest.mark.skipif(not HAS_CC, reason="needs the energy extra (codecarbon)")
def test_a_run_has_cost_and_cost_at_and_an_estimate_is_labelled(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path / "none")
    r = groklab.run(groklab.resolve("default", overrides=TINY + ["cost.country=FRA"]), out=tmp_path / "r",
                    report=False)
    c, at = r.summary["cost"], r.summary["cost_at"]
    n = len(r.metrics)
    assert c["flops"] == c["flops_per_step"] * r.summary["steps_done"] + c["flops_per_eval"] * n \
        + c["flops_per_train_pass"]  # full batch: only the final evaluation passes over train
    assert c["method"] == "estimated" and c["joules"] > 0 and c["cpu_seconds"] > 0
    assert c["country"] == "FRA"
    # co2_g comes from the unrounded joules, and summary.json rounds joules to 0.001 J: on a run
    # of a fraction of a joule that rounding alone is over 1e-3 relative (it failed CI once)
    g_per_j = c["carbon_intensity_g_per_kwh"] / 3.6e6
    assert c["co2_g"] == pytest.approx(c["joules"] * g_per_j, rel=1e-3, abs=0.0005 * g_per_j)
    assert set(at) == set(r.summary["generalized_at"])
    for thr, step in r.summary["generalized_at"].items():
        assert (at[thr] is None) == (step is None)
        if step is not None:
            assert at[thr]["step"] == step and 0 < at[thr]["flops"] <= c["flops"]
            assert at[thr]["joules"] <= c["joules"] + 1e-9


def test_resume_carries_the_cpu_seconds(tmp_path):
    cfg = groklab.resolve("default", overrides=TINY + ["train.save_every=20"])
    groklab.run(cfg, out=tmp_path / "r", report=False)
    r = groklab.resume(tmp_path / "r", overrides=["train.steps=60"], report=False)
    c = r.summary["cost"]
    assert c["flops"] >= c["flops_per_step"] * 60 and c["cpu_seconds"] > 0


def test_bad_country_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(ConfigError, match="cost.country='usa': expected WORLD or an ISO-3"):
        groklab.resolve("default", overrides=["cost.country=usa"])
    assert main(["run", "--quiet", "--out", str(tmp_path / "x"), "--set", "cost.country=U1A"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cost.country" in err
    if HAS_CC:
        assert main(["run", "--quiet", "--out", str(tmp_path / "y"), "--set", "cost.country=ZZZ"]) == 2
        assert "not in CodeCarbon's table" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_format_cost_line():
    line = C.format_cost({"flops": 2.5e12, "cpu_seconds": 3.2, "joules": 41.0, "method": "estimated",
                          "co2_g": 0.0054, "country": "WORLD"})
    assert line == "2.5 TFLOP · 3.2 CPU s · 41 J (estimated) · 0.0054 g CO2e (WORLD)"
    assert "energy missing: no RAPL" in C.format_cost({"flops": 10, "cpu_seconds": 0, "joules": None,
                                                       "energy_missing": "no RAPL", "co2_g": None})


SWEEP = """
preset = "prieto"
name = "costed"
ensemble = false
[base]
"task.p" = 11
"task.frac" = 0.5
"model.hidden" = [16]
"train.steps" = 20
"train.eval_every" = 10
"train.n_checkpoints" = 0
[axes]
"optim.lr" = [1e-3, 1e-2]
"""


def test_sweep_table_has_each_runs_cost_and_the_sweep_total(tmp_path, capsys):
    from groklab.runs.rundir import read_json
    from groklab.sweep.table import read_csv, total_cost
    (tmp_path / "s.toml").write_text(SWEEP)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    rows = read_csv(tmp_path / "s" / "results.csv")
    assert len(rows) == 2 and all(int(r["flops"]) > 0 and float(r["cpu_seconds"]) > 0 for r in rows)
    total = read_json(tmp_path / "s" / "cost.json")
    assert total["flops"] == sum(int(r["flops"]) for r in rows) and total["rows_with_cost"] == 2
    assert "cost of the sweep (2 of 2 runs)" in capsys.readouterr().out
    assert total_cost([{"flops": "10", "joules": "", "cpu_seconds": "1"}])["joules"] is None


def test_ensemble_members_have_the_flops_of_single_runs_and_share_the_rest(tmp_path):
    from groklab.sweep.ensemble import train_ensemble
    cfgs = [groklab.resolve("prieto", overrides=["task.p=11", "task.frac=0.5", "model.hidden=16",
                                                 "train.steps=20", "train.n_checkpoints=0", f"optim.lr={lr}"])
            for lr in (1e-3, 1e-2)]
    ens = train_ensemble(cfgs, [tmp_path / "a", tmp_path / "b"], report=False)
    one = groklab.run(cfgs[0], out=tmp_path / "one", report=False).summary["cost"]
    for s in ens:
        assert s["cost"]["flops"] == one["flops"] and s["cost"]["shared_by"] == 2
        assert s["cost"]["cpu_seconds"] > 0 and set(s["cost_at"]) == set(s["generalized_at"])


def test_format_cost_says_what_is_missing_and_human_flops_switches_unit_at_each_power():
    assert C.format_cost(None) == C.format_cost({}) == "cost: –"
    assert C.format_cost({"flops": None, "joules": None, "co2_g": None}) == \
        "– FLOP · 0.0 CPU s · energy missing: ? · CO2 –"
    assert C.format_cost({"flops": 999, "cpu_seconds": 1.0, "joules": 2.0, "method": "rapl", "co2_g": 0.5}) == \
        "999 FLOP · 1.0 CPU s · 2 J (rapl) · 0.5 g CO2e"
    assert C.human_flops(None) == "– FLOP"
    for n, text in ((1e15, "1 PFLOP"), (1e12, "1 TFLOP"), (1e9, "1 GFLOP"), (1e6, "1 MFLOP"), (999_999, "999999 FLOP"),
                    (2.5e15, "2.5 PFLOP"), (2.5e12, "2.5 TFLOP"), (2.5e9, "2.5 GFLOP"), (2.5e6, "2.5 MFLOP")):
        assert C.human_flops(n) == text


class _Source:
    """An energy source that read ``joules`` (what Estimate.stop returns)."""
    method = "estimated"

    def __init__(self, joules):
        self.joules = joules

    def stop(self):
        return self.joules


def test_meter_prorates_scales_and_rounds_with_a_fixed_clock(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path)                 # no RAPL here
    monkeypatch.setattr(C.time, "process_time", lambda: 5.0)      # no CPU time passes
    m = C.CostMeter("WORLD", "cpu").begin({"cpu_seconds": 4.0})  # a resumed run: 4 CPU s before
    m.source, m.gpu = _Source(10.0), _Source(1.23456)
    m.at[10] = (1.23456, None)
    cost, at = m.finish({"step": 7, "eval_val": 1, "eval_train": 0, "unknown": "not counted: why"},
                        [{"step": 10, "time": 0.5}], set(), 10, 1.23456, {"0.9": 10, "0.99": 20})
    assert cost["joules"] == pytest.approx(10.0 + 1.235, abs=1e-3)  # no CPU in this part: not scaled
    assert cost["cpu_seconds"] == 4.0 and cost["wall_seconds"] == 1.235 and cost["gpu_joules"] == 1.235
    assert cost["flops_note"] == "not counted: why" and cost["method"] == "estimated"
    assert at["0.9"]["joules"] == pytest.approx(11.23456 * 1.23456 / 4, abs=1e-3)  # prorated by CPU seconds
    assert at["0.9"]["cpu_seconds"] == 1.235 and at["0.9"]["wall_seconds"] == 0.5
    assert at["0.99"] == {"step": 20, "flops": 7 * 20 + 1, "cpu_seconds": None, "wall_seconds": None, "joules": None,
                          "co2_g": None}                          # never logged at step 20
    m = C.CostMeter("WORLD", "cpu").begin({"cpu_seconds": 2.0})
    m.source, m.cpu0 = _Source(10.0), 3.0                         # this part: 2 CPU s of 4 in all
    m.stop()
    assert m.joules == pytest.approx(20.0)                        # the estimate scaled to the whole run


def test_rapl_reads_exact_joules_and_a_resumed_run_adds_its_earlier_part(tmp_path, monkeypatch):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("1000")
    r = C.Rapl(tmp_path)
    assert r.read() == 0.0
    (zone / "energy_uj").write_text("123457000")
    assert r.read() == pytest.approx(123.456, rel=1e-12)
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path)
    m = C.CostMeter("WORLD", "cpu").begin({"cpu_seconds": 1.0, "joules": 5.0})
    (zone / "energy_uj").write_text("125457000")                 # 2 J in this part
    cost, _ = m.finish({"step": 1, "eval_val": 1, "eval_train": 0}, [], set(), 0, 0.0, {})
    assert cost["joules"] == pytest.approx(7.0) and cost["method"] == "rapl"
    assert C.carbon_intensity("WORLD") == (475.0, "world average, IEA 2019 (475 gCO2e/kWh)")


@pytest.mark.skipif(not HAS_CC, reason="needs the energy extra (codecarbon)")
def test_the_estimate_is_one_quiet_process_tracker_that_writes_no_file(tmp_path, monkeypatch):
    import codecarbon
    made = []

    class Tracker:
        def __init__(self, **kw):                                 # CodeCarbon talks while it sets up
            logging.getLogger("codecarbon").handle(logging.LogRecord("codecarbon", logging.WARNING, "", 0,
                                                                     "set-up note", None, None))
            made.append(kw)

        def start(self):
            pass
    import logging
    heard = []
    listener = logging.Handler()
    listener.emit = heard.append
    logging.getLogger("codecarbon").addHandler(listener)
    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Tracker)
    monkeypatch.setattr(C, "_TRACKER", {})
    monkeypatch.setattr(C, "RAPL_ROOT", tmp_path)
    assert C.open_energy() == ("estimate", "")
    a, b = C.Estimate("WORLD"), C.Estimate("FRA")
    assert a.tracker is b.tracker and len(made) == 1             # one tracker per process
    assert made == [{"country_iso_code": "USA", "tracking_mode": "process", "save_to_file": False,
                     "log_level": "error", "allow_multiple_runs": True}]
    logging.getLogger("codecarbon").removeHandler(listener)
    assert heard == [] and not logging_disabled()                # silenced while it set up, not after
    monkeypatch.setattr(C, "_TRACKER", {})
    C.Estimate("FRA")
    assert made[-1]["country_iso_code"] == "FRA"


def logging_disabled() -> bool:
    import logging
    return logging.getLogger("codecarbon").disabled


def test_counting_leaves_the_model_alone_and_counts_a_models_own_objective():
    class Own(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x)

        def objective(self, out, y):                              # one more matrix product in the loss
            return (out @ self.lin.weight).sum()
    model, x = Own(), torch.randn(5, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    own = C.count_flops(model, lambda out, y: out.sum(), (x, x), (x, x))["step"]
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.objective = None                                        # no objective of its own: the loss_fn
    assert own > C.count_flops(model, lambda out, y: out.sum(), (x, x), (x, x))["step"] > 0


@pytest.mark.skipif(not HAS_CC, reason="needs the energy extra (codecarbon)")
def test_country_errors_name_examples_and_need_codecarbons_table(monkeypatch):
    with pytest.raises(ValueError, match="^cost.country='ZZZ' is not in CodeCarbon's table; allowed: WORLD or an "
                                         "ISO-3 code such as USA, FRA, DEU, IND$"):
        C.check_country("ZZZ")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "codecarbon" else real(n, *a))
    assert C.countries() is None
    assert C.carbon_intensity("FRA") == (None, "the intensity of FRA needs CodeCarbon's table: "
                                                "pip install 'groklab[energy]'")


def test_flops_are_counted_per_shape(monkeypatch):
    monkeypatch.setattr(C, "_FLOPS", {})
    counts = []
    for hidden in ("16,16", "8,8"):
        cfg = groklab.resolve("default", overrides=TINY[:1] + [f"model.hidden={hidden}"] + TINY[2:])
        tr = groklab.train.loop.Trainer.build(cfg)
        counts.append(C.run_flops(cfg, tr.model, tr.loss_fn, tr.data)["step"])
    assert counts[0] > counts[1] > 0 and len(C._FLOPS) == 2
