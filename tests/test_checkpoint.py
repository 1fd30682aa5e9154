"""Checkpoints: nested states survive the safetensors + JSON round trip with their types, and only
complete checkpoint directories count."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from groklab.runs.checkpoint import (
    all_finite,
    flatten,
    is_rolling,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    step_dir,
    unflatten,
)


def round_trip(obj):
    tensors: dict = {}
    skel = flatten(obj, "s", tensors)
    json.dumps(skel)                       # the skeleton is plain JSON
    return unflatten(json.loads(json.dumps(skel)), tensors)


def test_flatten_unflatten_keeps_tuples_lists_dicts_and_scalars():
    state = {"tx": ({"mu": None}, {"buf": (), "sum": None, "count": 3}, ()),
             "pos": [1, 2.5, "x", True, None], "nested": [(1, 2), [3]], "empty": {}}
    back = round_trip(state)
    assert back == state
    assert type(back["tx"]) is tuple and type(back["tx"][1]["buf"]) is tuple
    assert type(back["pos"]) is list and type(back["nested"][0]) is tuple and type(back["nested"][1]) is list
    assert type(back["pos"][3]) is bool and back["tx"][2] == ()


def test_tensors_inside_tuples_come_back_equal_and_detached():
    a = torch.randn(3, 2, requires_grad=True)
    state = ({"w": a, "steps": (torch.tensor(5), torch.arange(4))}, [torch.ones(2, dtype=torch.float64)])
    back = round_trip(state)
    assert type(back) is tuple and type(back[0]["steps"]) is tuple and type(back[1]) is list
    assert torch.equal(back[0]["w"], a.detach()) and not back[0]["w"].requires_grad
    assert torch.equal(back[0]["steps"][1], torch.arange(4)) and back[1][0].dtype == torch.float64


def test_flatten_refuses_what_it_cannot_store():
    with pytest.raises(TypeError, match="cannot checkpoint a set at s.bad"):
        flatten({"bad": {1, 2}}, "s", {})


def test_save_and_load_a_checkpoint(tmp_path):
    model = nn.Linear(3, 2)
    state = {"opt": ({"step": torch.tensor(4.0)},), "rng": torch.get_rng_state(), "wall": 1.5}
    d = save_checkpoint(tmp_path, 7, model, state)
    assert d == step_dir(tmp_path, 7) and d.name == "step_00000007"
    weights, back = load_checkpoint(tmp_path, 7)
    assert set(weights) == {"weight", "bias"} and torch.equal(weights["weight"], model.weight.detach())
    assert type(back["opt"]) is tuple and back["wall"] == 1.5 and torch.equal(back["rng"], state["rng"])
    assert list_checkpoints(tmp_path) == [7]
    assert json.loads((d / "state.json").read_text())["step"] == 7


def test_a_checkpoint_is_written_in_a_hidden_sibling_then_renamed(tmp_path, monkeypatch):
    import os
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append((Path(src), Path(dst))), real(src, dst)))
    save_checkpoint(tmp_path, 3, nn.Linear(1, 1), {})
    (src, dst), = [(a, b) for a, b in seen if b.name == "step_00000003"]
    assert src.parent == dst.parent == tmp_path / "checkpoints" and src.name.startswith(".step_00000003.")


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    save_checkpoint(tmp_path, 1, nn.Linear(1, 1), {})
    with pytest.raises(TypeError, match="cannot checkpoint a set"):
        save_checkpoint(tmp_path, 2, nn.Linear(1, 1), {"bad": {1}})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000001"]


def test_only_complete_step_directories_are_checkpoints(tmp_path):
    model = nn.Linear(2, 2)
    for s in (100, 9, 20):
        save_checkpoint(tmp_path, s, model, {})
    ck = tmp_path / "checkpoints"
    (ck / "step_00000050").mkdir()                                   # killed before state.json
    (ck / "step_00000060").mkdir()
    (ck / "step_00000060" / "model.safetensors").write_bytes(b"")
    (ck / ".step_00000070.tmp123").mkdir()                           # an unfinished temp dir
    (ck / ".step_00000070.tmp123" / "state.json").write_text("{}")
    (ck / "step_latest").mkdir()
    (ck / "step_latest" / "state.json").write_text("{}")
    (ck / "notes.txt").write_text("")
    assert list_checkpoints(tmp_path) == [9, 20, 100]                # sorted as numbers
    assert list_checkpoints(tmp_path / "nowhere") == []


def test_the_latest_good_checkpoint_skips_non_finite_weights_and_unreadable_files(tmp_path):
    from groklab.runs.checkpoint import load_latest_good
    model = nn.Linear(2, 2)
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, s, model, {"wall": float(s)})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    save_checkpoint(tmp_path, 4, model, {"wall": 4.0})                    # NaN in the weights
    (step_dir(tmp_path, 3) / "state.json").write_text("{not json")        # unreadable
    save_checkpoint(tmp_path, 2, nn.Linear(2, 2), {"wall": float("inf")})  # inf in the state
    step, weights, state, skipped = load_latest_good(tmp_path)
    assert (step, state["wall"]) == (1, 1.0) and set(weights) == {"weight", "bias"}
    assert skipped[0] == "step 4: holds non-finite numbers" and skipped[2] == "step 2: holds non-finite numbers"
    assert skipped[1].startswith("step 3: unreadable (JSONDecodeError: Expecting property name")


def test_no_usable_checkpoint_says_why_each_was_skipped(tmp_path):
    from groklab.runs.checkpoint import load_latest_good
    with pytest.raises(FileNotFoundError, match="no usable checkpoint in .*nowhere'$"):
        load_latest_good(tmp_path / "nowhere")
    save_checkpoint(tmp_path, 5, nn.Linear(2, 2), {"x": float("nan")})
    save_checkpoint(tmp_path, 6, nn.Linear(2, 2), {"x": float("inf")})
    with pytest.raises(FileNotFoundError,
                       match=r"\(step 6: holds non-finite numbers; step 5: holds non-finite numbers\)$"):
        load_latest_good(tmp_path)


def test_all_finite_looks_into_every_nesting():
    nan = torch.tensor([1.0, float("nan")])
    assert all_finite({"a": [torch.ones(2), (1, 2.5, "x", None)], "n": torch.tensor([3])})
    for bad in ({"a": [nan]}, [(torch.ones(1), nan)], {"f": float("inf")}, (float("nan"),), {"m": [[nan]]}):
        assert not all_finite(bad), bad
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.bias.fill_(float("inf"))
    assert not all_finite(m) and all_finite(nn.Linear(2, 1))


def test_checkpoints_of_large_steps_and_a_root_that_does_not_exist_yet(tmp_path):
    root = tmp_path / "new" / "run"
    save_checkpoint(root, 12_345_678, nn.Linear(1, 1), {})
    save_checkpoint(root, 3, nn.Linear(1, 1), {})
    assert list_checkpoints(root) == [3, 12_345_678]


def test_a_checkpoint_says_whether_it_is_rolling_and_what_is_not_known_to_be_is_kept(tmp_path):
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, 10, model, {"a": 1}, rolling=True)
    save_checkpoint(tmp_path, 20, model, {"a": 1})
    assert is_rolling(tmp_path, 10) and not is_rolling(tmp_path, 20)
    assert load_checkpoint(tmp_path, 10)[1] == {"a": 1}        # the flag is not part of the state
    meta = step_dir(tmp_path, 20) / "state.json"
    meta.write_text(json.dumps({"step": 20, "state": {"a": 1}}))   # written before the flag existed
    assert not is_rolling(tmp_path, 20)
    for damaged in ("[1]", "{", "\xff"):
        (step_dir(tmp_path, 10) / "state.json").write_text(damaged)
        assert not is_rolling(tmp_path, 10)
    assert not is_rolling(tmp_path, 30)                          # no such checkpoint
