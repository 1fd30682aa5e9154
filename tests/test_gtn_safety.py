"""GTN run directories get the same care as training runs: bad --out, damaged files, locks,
non-finite teachers (one line, exit 2, nothing half-made, the last finite checkpoint kept)."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from groklab.cli import main
from groklab.config import ConfigError
from groklab.gtn import run as gtn_run
from groklab.runs.checkpoint import list_checkpoints, load_weights, step_dir
from gtn_tiny import one_thread, tiny_cfg, tiny_data  # noqa: F401  (fixture)

DIGITS_TINY = ["--set", "meta.steps=2", "--set", "inner.steps=2", "--set", "eval.learners=1",
               "--set", "generator.hidden=8", "--set", "learner.hidden=4", "--set", "eval.lrs=0.1"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("out, needle", [("", "--out '': expected a directory path"),
                                         ("afile/g", "Not a directory")])
def test_a_bad_out_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, out, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    assert main(["gtn", "train", "--quiet", "--out", out, *DIGITS_TINY]) == 2
    assert needle in _one_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def _trained(tmp_path):
    out = tmp_path / "g"
    gtn_run.train(tiny_cfg(), out, evaluate=False, data=tiny_data())
    return out


def test_a_damaged_config_or_summary_is_one_line(tmp_path, capsys):
    d = _trained(tmp_path)
    (d / "config.json").write_text('{"inner": {"steps": ')
    assert main(["gtn", "eval", str(d)]) == 2
    assert "config.json" in _one_line(capsys)
    assert main(["gtn", "train", "--resume", str(d), "--quiet"]) == 2
    assert "is damaged: not valid JSON" in _one_line(capsys)


def test_resume_with_out_is_refused_not_ignored(tmp_path, capsys):
    d = _trained(tmp_path)
    before = sorted(p.name for p in d.iterdir())
    assert main(["gtn", "train", "--resume", str(d), "--out", str(tmp_path / "elsewhere"), "--quiet"]) == 2
    assert "drop --out" in _one_line(capsys)
    assert not (tmp_path / "elsewhere").exists() and sorted(p.name for p in d.iterdir()) == before


def test_resume_falls_back_from_a_truncated_checkpoint(tmp_path, capsys):
    d = _trained(tmp_path)
    assert list_checkpoints(d) == [3, 6]
    f = step_dir(d, 6) / "model.safetensors"
    f.write_bytes(f.read_bytes()[:64])
    cfg, teacher, data = gtn_run.load_run(d, data=tiny_data())
    assert "skipped checkpoint step 6: unreadable" in capsys.readouterr().err
    w3 = load_weights(step_dir(d, 3))
    assert all(torch.equal(teacher.state_dict()[k], w3[k]) for k in w3)


HOLD = textwrap.dedent("""
    import sys, time
    from groklab.runs.lock import dir_lock
    with dir_lock(sys.argv[1], "GTN run directory"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_gtn_run_in_use_is_refused_with_its_holder(tmp_path):
    d = _trained(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"is in use by pid {holder.pid}"):
            gtn_run.evaluate_run(d, data=tiny_data())
        with pytest.raises(ConfigError, match=f"is in use by pid {holder.pid}"):
            gtn_run.resume(d, evaluate=False, data=tiny_data())
    finally:
        holder.kill()
        holder.communicate()


def test_a_teacher_that_goes_non_finite_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    from groklab.gtn import meta
    real = meta.meta_step

    def poisoned(cfg, teacher, opt, data, s):
        rec = real(cfg, teacher, opt, data, s)
        if s == 4:  # after outer step 5: the checkpoint at 6 would hold NaN
            with torch.no_grad():
                next(teacher.parameters()).fill_(float("nan"))
        return rec

    monkeypatch.setattr(meta, "meta_step", poisoned)
    out = tmp_path / "n"
    gtn_run.train(tiny_cfg(), out, evaluate=False, data=tiny_data())
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "nan" and "not finite after outer step 6" in s["message"]
    assert s["message"].endswith("Last good checkpoint: step 3") and list_checkpoints(out) == [3]


@pytest.mark.parametrize("every", [1, 3])
def test_a_teacher_whose_meta_gradients_stay_non_finite_stops_with_status_nan(tmp_path, monkeypatch, every):
    from groklab.gtn import meta
    real = meta.meta_step

    def overflowing(cfg, teacher, opt, data, s):  # from outer step 5 on, every ``every``-th
        rec = real(cfg, teacher, opt, data, s)
        if s >= 4 and (s - 4) % every == 0:
            rec["grad_norm"] = float("inf")
        return rec

    monkeypatch.setattr(meta, "meta_step", overflowing)
    monkeypatch.setattr(meta, "MAX_SKIPPED", 5)
    out = tmp_path / "n"
    steps = 15 if every == 1 else 24  # every 3rd: 7 non-finite steps in all, never 5 in a row
    gtn_run.train(tiny_cfg(f"meta.steps={steps}"), out, evaluate=False, data=tiny_data())
    s = json.loads((out / "summary.json").read_text())
    if every == 1:  # steps 5..9 non-finite in a row: stopped there, the checkpoint at 9 not written
        assert s["status"] == "nan" and "non-finite at 5 outer steps in a row (5-9)" in s["message"]
        assert list_checkpoints(out) == [3, 6] and s["message"].endswith("Last good checkpoint: step 6")
    else:           # an occasional non-finite step is skipped, and the run goes on to the end
        assert s["status"] == "completed" and list_checkpoints(out)[-1] == 24


# ---- no gtn command writes into an existing --out; every count and choice in its range -------

def _tree(d):
    """Every file under ``d`` with its bytes (the lock file aside): what a refusal must keep."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture
def gtn_dir(tmp_path):
    """A tiny GTN run made by the CLI (digits), as `gtn nas` and `gtn eval` read it."""
    from test_gtn_meta import TINY_CLI
    out = tmp_path / "gtn"
    assert main(["gtn", "train", "--quiet", "--no-eval", "--out", str(out),
                 *[a for s in TINY_CLI for a in ("--set", s)]]) == 0
    return out


NAS_TINY = ["--archs", "3", "--full-steps", "2", "--seeds", "1", "--quiet"]


@pytest.mark.parametrize("command", ["train", "nas"])
@pytest.mark.parametrize("target", ["the run", "a nas dir", "an empty dir"])
def test_no_gtn_command_writes_into_an_existing_out(gtn_dir, tmp_path, capsys, command, target):
    existing = {"the run": gtn_dir, "a nas dir": tmp_path / "nas", "an empty dir": tmp_path / "empty"}[target]
    if target == "a nas dir":
        assert main(["gtn", "nas", "--gtn", str(gtn_dir), "--out", str(existing), *NAS_TINY]) == 0
    existing.mkdir(exist_ok=True)
    capsys.readouterr()
    before, run_before = _tree(existing), _tree(gtn_dir)
    args = (["gtn", "train", "--quiet", "--out", str(existing), *DIGITS_TINY] if command == "train" else
            ["gtn", "nas", "--gtn", str(gtn_dir), "--out", str(existing), *NAS_TINY])
    assert main(args) == 2
    err = _one_line(capsys)
    assert repr(str(existing)) in err and "already exists" in err
    assert _tree(existing) == before and _tree(gtn_dir) == run_before


def test_nas_without_out_takes_a_new_directory_each_time(gtn_dir, capsys):
    assert main(["gtn", "nas", "--gtn", str(gtn_dir), *NAS_TINY]) == 0
    first = _tree(gtn_dir / "nas")
    assert main(["gtn", "nas", "--gtn", str(gtn_dir), *NAS_TINY, "--seed", "1"]) == 0
    assert _tree(gtn_dir / "nas") == first
    assert f"report: {gtn_dir / 'nas-1' / 'report.html'}" in capsys.readouterr().out
    assert (gtn_dir / "nas-1" / "nas.json").is_file()


def test_a_failed_nas_leaves_no_directory(gtn_dir, tmp_path, monkeypatch):
    from groklab.gtn import nas

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(nas, "score_architecture", boom)
    assert main(["gtn", "nas", "--gtn", str(gtn_dir), "--out", str(tmp_path / "n"), *NAS_TINY]) == 130
    assert not (tmp_path / "n").exists()          # a rerun with the same --out is not refused


BIG = "99999999999"


@pytest.mark.timeout(60)  # unbounded, these ran for hours
@pytest.mark.parametrize("args, needle", [
    (["eval", "{gtn}", "--learners", BIG], f"--learners {BIG}: expected 1 to 10000"),
    (["eval", "{gtn}", "--learners", "0"], "--learners 0: expected 1 to 10000"),
    (["nas", "--archs", BIG], f"--archs {BIG}: expected 3 to 168"),
    (["nas", "--archs", "90", "--kinds", "mlp"], "--archs 90: expected 3 to 84"),
    (["nas", "--seeds", BIG], f"--seeds {BIG}: expected 1 to 1000"),
    (["nas", "--proxy-learners", BIG], f"--proxy-learners {BIG}: expected 1 to 10000"),
    (["nas", "--full-steps", BIG], f"--full-steps {BIG}: expected 1 to 10000000"),
    (["nas", "--proxy-learners", "0"], "--proxy-learners 0: expected 1 to 10000"),
    (["nas", "--seed", "-1"], "--seed -1: expected 0 to 4294967295"),
    (["nas", "--top-k", "0"], "--top-k 0: expected 1 to 3"),
    (["nas", "--top-k", "99"], "--top-k 99: expected 1 to 3"),
])
def test_counts_and_choices_out_of_range_are_one_line(gtn_dir, tmp_path, capsys, args, needle):
    out = tmp_path / "n"
    if args[0] == "nas":
        args = ["nas", "--gtn", "{gtn}", *NAS_TINY, "--out", str(out), *args[1:]]
    before = _tree(gtn_dir)
    assert main(["gtn", *[a.format(gtn=gtn_dir) for a in args]]) == 2
    assert needle in _one_line(capsys)
    assert _tree(gtn_dir) == before and not out.exists()
