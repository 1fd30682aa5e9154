"""The "Inside the model" route, /api/neurons (groklab.dash.inside), on hand-made run
directories with real checkpoints: steps and views, bad steps and paths, files out of the root,
corrupt and non-finite checkpoints, runs it does not apply to, the per-checkpoint cache."""
from __future__ import annotations

import json
import os
import threading

import pytest
import torch

import groklab
from groklab.dash import inside
from groklab.dash.server import make_server
from groklab.measure.neurons import frame_tokens, neuron_view
from groklab.models import build_model
from groklab.runs.checkpoint import save_checkpoint, step_dir
from groklab.tasks import build_task
from test_dash import get, get_json, make_run, strict_json

STEPS = (1, 5, 20)


def pair_run(d, steps=STEPS) -> dict:
    """A pair-model run over x+y mod 23 with checkpoints at ``steps`` (weights nudged between
    them); returns {step: state dict}."""
    make_run(d)
    cfg = groklab.resolve("pair", overrides=["task.p=23", "model.d_model=16", "model.d_mlp=8"])
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()),
                                               "model": {"arch": "pair"}}))
    model = build_model(cfg, build_task(cfg.task)).double()
    saved = {}
    for s in steps:
        with torch.no_grad():
            model.W_in.add_(0.1 * s)
        save_checkpoint(d, s, model, {"step": s})
        saved[s] = {k: v.clone() for k, v in model.state_dict().items()}
    return saved


def test_the_route_lists_the_steps_and_returns_the_view_of_one(server, tmp_path):
    saved = pair_run(tmp_path / "r")
    code, last = get_json(server, "/api/neurons?path=r")
    assert code == 200 and last["available"] is True
    assert last["steps"] == list(STEPS) and last["step"] == 20 and (last["op"], last["p"]) == ("x+y", 23)
    code, five = get_json(server, "/api/neurons?path=r&step=5")
    assert code == 200 and five["step"] == 5
    want = json.loads(json.dumps(neuron_view(saved[5], frame_tokens("x+y", 23))))
    assert five["view"] == want and five["view"]["n_neurons"] == 8
    assert five["view"] != last["view"]


@pytest.mark.parametrize("query, status, message", [
    ("path=r&step=7", 404, "no checkpoint at step 7 in 'r'; its checkpoints: 1, 5, 20"),
    ("path=r&step=abc", 400, "step must be a whole number, not 'abc'"),
    ("path=r&step=-1", 400, "step must be a whole number"),
    ("path=nope", 404, "'nope' is not a run directory under the root"),
    ("path=../r", 404, "is not a run directory under the root"),
    ("path=r/checkpoints", 404, "is not a run directory under the root"),
])
def test_bad_steps_and_paths_are_one_line_errors(server, tmp_path, query, status, message):
    pair_run(tmp_path / "r")
    code, body = get_json(server, "/api/neurons?" + query)
    assert code == status and message in body["error"] and "\n" not in body["error"]
    assert get_json(server, "/api/neurons?path=r")[0] == 200  # and the server keeps answering


def test_checkpoints_out_of_the_root_are_not_read(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    pair_run(outside / "o")
    pair_run(root / "linked", steps=(3,))
    # the whole checkpoints folder, then one checkpoint's weights, point out of the root
    os.rename(root / "linked" / "checkpoints", tmp_path / "ck")
    os.symlink(outside / "o" / "checkpoints", root / "linked" / "checkpoints")
    assert inside.checkpoint_steps(root.resolve(), (root / "linked").resolve()) == []
    pair_run(root / "one", steps=(3, 4))
    w = step_dir(root / "one", 4) / "model.safetensors"
    w.unlink()
    os.symlink(step_dir(outside / "o", 5) / "model.safetensors", w)
    assert inside.checkpoint_steps(root.resolve(), (root / "one").resolve()) == [3]
    with pytest.raises(inside.ViewError, match="no checkpoint at step 4"):
        inside.neurons_detail(root, (root / "one").resolve(), "4")
    srv = make_server(root, port=0)  # a path out of the root, to a real run: refused
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        code, body = get_json(srv, "/api/neurons?path=../outside/o")
        assert code == 404 and "not a run directory under the root" in body["error"]
        assert get_json(srv, "/api/neurons?path=linked")[1]["steps"] == []
    finally:
        srv.shutdown()
        srv.server_close()


def test_runs_the_view_does_not_apply_to_are_hidden_with_a_reason(server, tmp_path):
    make_run(tmp_path / "nockpt")
    d = make_run(tmp_path / "parity")
    (d / "config.json").write_text(json.dumps({"task": {"name": "parity"}, "model": {"arch": "mlp"}}))
    for path, reason in (("nockpt", "no checkpoints yet"), ("parity", "needs a modular task")):
        code, body = get_json(server, f"/api/neurons?path={path}")
        assert code == 200 and body["available"] is False and reason in body["reason"], body
        assert body["steps"] == [] and body["view"] is None


def test_a_corrupt_or_foreign_checkpoint_is_a_message_and_nan_stays_json(server, tmp_path):
    saved = pair_run(tmp_path / "r")
    w = step_dir(tmp_path / "r", 5) / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    code, body = get_json(server, "/api/neurons?path=r&step=5")
    assert code == 422 and "checkpoint step 5 is unreadable" in body["error"]
    from safetensors.torch import save_file
    save_file({"foo": torch.zeros(3)}, str(w))
    code, body = get_json(server, "/api/neurons?path=r&step=5")
    assert code == 422 and "have no 'W_E'" in body["error"]
    save_file({**saved[1], "W_in": torch.full_like(saved[1]["W_in"], float("nan"))}, str(w))
    code, raw = get(server, "/api/neurons?path=r&step=5")
    assert code == 200 and strict_json(raw)["view"]["neurons"][0]["wave"][0] == "NaN"


def test_a_view_is_computed_once_per_checkpoint_file(server, tmp_path, monkeypatch):
    saved = pair_run(tmp_path / "r")
    calls = []
    monkeypatch.setattr(inside, "neuron_view", lambda w, t: calls.append(1) or neuron_view(w, t))
    for _ in range(3):
        assert get_json(server, "/api/neurons?path=r&step=1")[0] == 200
    assert len(calls) == 1
    from safetensors.torch import save_file  # rewritten (a resumed run): computed again
    save_file({k: v * 2 for k, v in saved[1].items()}, str(step_dir(tmp_path / "r", 1) / "model.safetensors"))
    assert get_json(server, "/api/neurons?path=r&step=1")[0] == 200 and len(calls) == 2
