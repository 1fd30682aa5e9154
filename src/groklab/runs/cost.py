"""What a run cost: FLOPs, process CPU seconds, wall seconds, energy and CO₂-equivalent.

* **FLOPs** are counted once per run shape with ``torch.utils.flop_counter.FlopCounterMode`` on
  a copy of the model on the meta device (no arithmetic is done): one training step (forward
  and backward on one batch) and one evaluation forward over the validation set and over the
  training set, then multiplied by how often each happened. FlopCounterMode counts 2·m·n·k per
  matrix product (mm, addmm, bmm, einsum's bmm, conv, SDPA) and nothing for element-wise work:
  activations, softmax and the loss, the optimiser's arithmetic (Adam's moments, Muon's
  Newton–Schulz iterations, EGD's SVD), Grokfast's filter, ⊥Grad's projection, weight-norm
  control and the gathers of the fast paths (the one-hot first layer of the MLP) all count 0.
* **Energy** is *measured* from the CPU package counters of Intel RAPL
  (``/sys/class/powercap/intel-rapl*/energy_uj``) when they are readable (``"method": "rapl"``:
  the whole package, shared with whatever else ran), else *estimated* by CodeCarbon's
  ``OfflineEmissionsTracker`` in process mode (``"method": "estimated"``: its CPU power model
  scaled by this process's CPU share, plus its RAM model, and GPU energy through NVML when a GPU
  is in use). With neither, ``joules`` is None and ``energy_missing`` says why. An estimate is
  never labelled a measurement. With RAPL and a CUDA device, NVML's GPU energy counter is read
  too (``gpu_joules``).
* **CO₂-g** = kWh × the grid's carbon intensity for ``cost.country`` (CodeCarbon's
  ``global_energy_mix.json``), or the world average of 475 gCO₂e/kWh (IEA, Global Energy & CO₂
  Status Report 2019, the figure CodeCarbon itself falls back to) for ``WORLD``, the default.

``cost_at[T]`` is what it cost to reach ``generalized_at[T]``: FLOPs and seconds up to that
evaluation, and the energy read then (RAPL), or the estimate's total prorated by CPU seconds.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

WORLD_G_PER_KWH = 475.0        # IEA 2019 world average, CodeCarbon's own fallback
RAPL_ROOT = Path("/sys/class/powercap")
J_PER_KWH = 3.6e6
FLOPS_NOTE = "matrix products only (FlopCounterMode): element-wise work, the optimiser and gradient filters count 0"


# ---- FLOPs ---------------------------------------------------------------------------------

def _counted(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def count_flops(model: torch.nn.Module, loss_fn, batch: tuple, val: tuple,
                train: tuple | None = None) -> dict[str, int]:
    """FLOPs of one training step on ``batch`` = (x, y) and of one evaluation on ``val`` (plus
    ``train`` when given), counted on a meta-device copy of ``model``.

    Returns ``{"step": forward + backward, "eval_val": forward on val, "eval_train": forward
    on train (0 if not given)}``."""
    meta = copy.deepcopy(model).to("meta")
    was = model.training

    objective = getattr(meta, "objective", None) or loss_fn  # a model's own loss reads its copy

    def step():
        x, y = (t.to("meta") for t in batch)
        objective(meta(x), y).backward()

    def forward(data):
        return lambda: meta(data[0].to("meta"))

    meta.train(was)
    out = {"step": _counted(step)}
    meta.eval()
    for p in meta.parameters():  # no autograd (FlopCounterMode's module hooks trip on no_grad)
        p.requires_grad_(False)
    out["eval_val"] = _counted(forward(val))
    out["eval_train"] = _counted(forward(train)) if train is not None else 0
    return out


def flops_upto(flops: dict, steps: int, evals: int, train_evals: int) -> int:
    """Total FLOPs of ``steps`` updates, ``evals`` evaluations on validation data and
    ``train_evals`` separate passes over the training set; None when the FLOPs are unknown."""
    if flops["step"] is None:
        return None
    return flops["step"] * steps + flops["eval_val"] * evals + flops["eval_train"] * train_evals


# ---- carbon intensity ------------------------------------------------------------------------

def _codecarbon_data() -> Path | None:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "private_infra" / "global_energy_mix.json"


def countries() -> dict[str, float] | None:
    """ISO-3 code -> gCO₂e/kWh from CodeCarbon's table, or None without CodeCarbon."""
    path = _codecarbon_data()
    if path is None or not path.is_file():
        return None
    return {k: float(v["carbon_intensity"]) for k, v in json.loads(path.read_text()).items()
            if isinstance(v, dict) and "carbon_intensity" in v}


def carbon_intensity(country: str) -> tuple[float | None, str]:
    """(gCO₂e/kWh, where it comes from) for ``country`` ("WORLD" or an ISO-3 code)."""
    if country == "WORLD":
        return WORLD_G_PER_KWH, "world average, IEA 2019 (475 gCO2e/kWh)"
    table = countries()
    if table is None:
        return None, f"the intensity of {country} needs CodeCarbon's table: pip install 'groklab[energy]'"
    if country not in table:
        return None, f"{country} is not in CodeCarbon's global_energy_mix.json"
    return table[country], f"{country} grid mix, CodeCarbon global_energy_mix.json"


def check_country(country: str) -> None:
    """ValueError when CodeCarbon's table is installed and does not know ``country``."""
    table = countries()
    if country != "WORLD" and table is not None and country not in table:
        raise ValueError(f"cost.country={country!r} is not in CodeCarbon's table; allowed: WORLD or an "
                         f"ISO-3 code such as {', '.join(c for c in ('USA', 'FRA', 'DEU', 'IND') if c in table)}")


# ---- energy sources --------------------------------------------------------------------------

class Rapl:
    """Intel RAPL package counters (µJ, wrapping at ``max_energy_range_uj``): a measurement."""
    method = "rapl"

    def __init__(self, root: Path | None = None):
        root = RAPL_ROOT if root is None else root
        self.zones = []
        for z in sorted(root.glob("intel-rapl:*")):
            if z.name.count(":") != 1:  # package zones only; their sub-zones are inside them
                continue
            e, m = z / "energy_uj", z / "max_energy_range_uj"
            wrap = int(m.read_text()) if m.is_file() else 2**64
            self.zones.append((e, wrap))
        if not self.zones:
            raise OSError(f"no intel-rapl package zones under {root}")
        self.last = [int(e.read_text()) for e, _ in self.zones]  # raises when not readable
        self.total = 0.0

    def read(self) -> float:
        """Joules since construction."""
        for i, (e, wrap) in enumerate(self.zones):
            now = int(e.read_text())
            self.total += ((now - self.last[i]) % wrap) / 1e6
            self.last[i] = now
        return self.total

    def stop(self) -> float:
        return self.read()


class Nvml:
    """NVML's GPU energy counter (mJ since the driver loaded) for CUDA device ``index``."""

    def __init__(self, index: int = 0):
        import pynvml
        pynvml.nvmlInit()
        self.nv = pynvml
        self.h = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.start = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.h)

    def stop(self) -> float:
        return (self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h) - self.start) / 1e3


_TRACKER: dict[int, Any] = {}  # one CodeCarbon tracker per process: its hardware probe runs once


class Estimate:
    """CodeCarbon's offline estimate for this run: a task of the process-wide tracker."""
    method = "estimated"

    def __init__(self, country: str):
        tracker = _TRACKER.get(os.getpid())  # a forked child starts its own (threads do not fork)
        if tracker is None:
            # start_task imports codecarbon.core.emissions on its first call (requests, urllib3:
            # 50-180 ms), which would land inside the run's clock: imported here, before it starts
            import codecarbon.core.emissions  # noqa: F401
            from codecarbon import OfflineEmissionsTracker
            log = logging.getLogger("codecarbon")
            log.disabled = True  # its set-up notes (INFO/WARNING) come before log_level applies
            try:
                # the country only names the tracker's own CO2 figure, which is not used:
                # co2_g comes from carbon_intensity(cost.country)
                tracker = OfflineEmissionsTracker(
                    country_iso_code="USA" if country == "WORLD" else country, tracking_mode="process",
                    save_to_file=False, log_level="error", allow_multiple_runs=True)
                tracker.start()
            finally:
                log.disabled = False
            _TRACKER[os.getpid()] = tracker
        self.tracker = tracker

    def begin(self) -> None:
        self.tracker.start_task("groklab-run")

    def read(self) -> None:  # the estimate is known only at the end; cost_at prorates it
        return None

    def stop(self) -> float:
        data = self.tracker.stop_task()
        if data is None:
            raise RuntimeError("CodeCarbon returned no data for the run")
        return float(data.energy_consumed) * J_PER_KWH


def open_energy(device: str = "cpu") -> tuple[Any, str]:
    """(source, "") for the best energy source here, or (None, why there is none)."""
    try:
        return Rapl(), ""
    except (OSError, ValueError) as e:
        rapl_why = f"RAPL counters not readable ({e.__class__.__name__})"
    if importlib.util.find_spec("codecarbon") is None:
        return None, f"{rapl_why} and CodeCarbon is not installed: pip install 'groklab[energy]'"
    return "estimate", ""


# ---- the meter a run carries -----------------------------------------------------------------

_FLOPS: dict[str, dict] = {}  # shape key -> counts: a race's seeds of one recipe count once


def run_flops(cfg, model: torch.nn.Module, loss_fn, data: tuple) -> dict[str, int]:
    """``count_flops`` for a run of ``cfg`` on ``data`` = (x_train, y_train, x_val, y_val):
    the step on one batch (``train.batch_size`` rows, or all), cached per shape."""
    d = cfg.to_dict()
    key = json.dumps([d["task"], d["model"], d["optim"]["name"], {k: d["train"][k] for k in
                      ("batch_size", "loss", "loss_dtype", "dtype", "fast", "device")}], sort_keys=True)
    if key not in _FLOPS:
        xtr, ytr, xva, yva = data
        bs = cfg.train.batch_size
        batch = (xtr, ytr) if bs == 0 or bs >= len(ytr) else (xtr[:bs], ytr[:bs])
        try:
            _FLOPS[key] = count_flops(model, loss_fn, batch, (xva, yva), (xtr, ytr))
        except (RuntimeError, NotImplementedError) as e:  # a model that cannot go to the meta device
            why = f"not counted: {type(model).__name__} does not run on the meta device ({str(e)[:120]})"
            return {"step": None, "eval_val": None, "eval_train": None, "unknown": why}
    return _FLOPS[key]


def step_forward_stands_in(cfg, model, full_batch: bool) -> bool:
    """Whether an evaluation takes the training loss and accuracy from the step's own forward
    (``train.loop._loop``): only the exact full-batch, full-precision forward without dropout, of
    a model without extra ``metrics`` (those need a pass of their own). The one copy of the rule:
    the loop evaluates by it and the cost counts training passes by it."""
    return (full_batch and cfg.model.dropout == 0 and cfg.train.autocast == "off"
            and not hasattr(model, "metrics"))


def train_pass_steps(cfg, n_train: int, records: list[dict], status: str, model=None) -> set[int]:
    """Evaluated steps that needed a separate pass over the training set: all of them unless the
    step's own forward stands in (``step_forward_stands_in``), and then only the final
    evaluation after the loop (which an early stop skips)."""
    steps = [r["step"] for r in records]
    bs = cfg.train.batch_size
    if not step_forward_stands_in(cfg, model, bs == 0 or bs >= n_train):
        return set(steps)
    return set() if status == "early_stopped" or not steps else {steps[-1]}


class CostMeter:
    """A run sink: process CPU seconds (and RAPL joules) at every evaluation; ``finish`` adds
    the FLOPs and returns the ``cost`` and ``cost_at`` of summary.json.

    ``before`` (a checkpoint's ``state()``) carries the CPU seconds and RAPL joules of the run's
    earlier part; an estimate for a resumed run is this part's, scaled by CPU seconds."""

    def __init__(self, country: str = "WORLD", device: str = "cpu"):
        self.country, self.device = country, device
        self.cpu_before, self.rapl_before = 0.0, None
        self.at: dict[int, tuple[float, float | None]] = {}
        self.source, self.missing = open_energy(device)
        if self.source == "estimate":
            try:
                self.source = Estimate(country)
            except Exception as e:  # noqa: BLE001 - CodeCarbon's failures must not stop a run
                self.source, self.missing = None, f"CodeCarbon failed: {e}"[:200]
        self.gpu = None
        self.joules: float | None = None      # this part of the run
        self.gpu_joules: float | None = None
        self.stopped = False
        self.cpu0 = time.process_time()

    def begin(self, before: dict | None = None) -> "CostMeter":
        """Start counting now (right before the loop); ``before`` is a checkpoint's ``state()``."""
        before = before or {}
        self.cpu_before = float(before.get("cpu_seconds", 0.0))
        self.rapl_before = before.get("joules")
        if isinstance(self.source, Estimate):
            self.source.begin()
        elif isinstance(self.source, Rapl):
            self.source.read()
            self.source.total = 0.0
            if self.device.startswith("cuda"):
                try:
                    self.gpu = Nvml(torch.cuda.current_device())
                except Exception:  # noqa: BLE001 - no NVML: CPU energy only
                    self.gpu = None
        self.cpu0 = time.process_time()
        return self

    def cpu(self) -> float:
        return self.cpu_before + time.process_time() - self.cpu0

    def _rapl(self) -> float | None:
        if not isinstance(self.source, Rapl) or (self.cpu_before and self.rapl_before is None):
            return None
        return (self.rapl_before or 0.0) + self.source.read()

    def log(self, step: int, record: dict) -> None:
        self.at[step] = (self.cpu(), self._rapl())

    def state(self) -> dict:
        """What a checkpoint keeps: CPU seconds and RAPL joules so far."""
        return {"cpu_seconds": self.cpu(), "joules": self._rapl()}

    def stop(self) -> None:
        """Stop the energy source (idempotent; called on every way out of a run)."""
        if self.stopped:
            return
        self.stopped = True
        cpu_part = time.process_time() - self.cpu0
        if self.source is not None:
            try:
                self.joules = self.source.stop()
            except Exception as e:  # noqa: BLE001
                self.source, self.missing = None, f"energy reading failed: {e}"[:200]
        if isinstance(self.source, Rapl):
            if self.cpu_before and self.rapl_before is None:
                self.joules, self.missing = None, "the run's earlier part had no RAPL reading"
            else:
                self.joules += self.rapl_before or 0.0
        elif self.joules is not None and self.cpu_before and cpu_part > 0:
            self.joules *= (self.cpu_before + cpu_part) / cpu_part
        if self.gpu is not None:
            try:
                self.gpu_joules = self.gpu.stop()
            except Exception:  # noqa: BLE001
                self.gpu_joules = None

    def finish(self, flops: dict, records: list[dict], train_passes: set[int], steps_done: int,
               wall: float, generalized_at: dict, shared_by: int = 1) -> tuple[dict, dict]:
        """(cost, cost_at) of summary.json; see the module docstring. ``shared_by`` = M splits
        the CPU seconds and joules evenly among M runs trained together (a vmap ensemble)."""
        self.stop()
        intensity, carbon_src = carbon_intensity(self.country)
        cpu_total = self.cpu() / shared_by
        joules = None if self.joules is None else (self.joules + (self.gpu_joules or 0.0)) / shared_by

        def co2(j):
            return None if j is None or intensity is None else float(f"{j / J_PER_KWH * intensity:.6g}")

        def flops_at(step: int) -> int:
            done = [r["step"] for r in records if r["step"] <= step]
            return flops_upto(flops, step, len(done), sum(1 for s in done if s in train_passes))

        cost = {"flops": flops_upto(flops, steps_done, len(records), len(train_passes)),
                "flops_per_step": flops["step"], "flops_per_eval": flops["eval_val"],
                "flops_per_train_pass": flops["eval_train"], "flops_note": flops.get("unknown", FLOPS_NOTE),
                "cpu_seconds": round(cpu_total, 3), "wall_seconds": round(wall, 3),
                "joules": None if joules is None else round(joules, 3),
                "method": None if joules is None else self.source.method}
        if joules is None:
            cost["energy_missing"] = self.missing
        if self.gpu_joules is not None:
            cost["gpu_joules"] = round(self.gpu_joules / shared_by, 3)
        if shared_by > 1:
            cost["shared_by"] = shared_by
        cost |= {"co2_g": co2(joules), "country": self.country,
                 "carbon_intensity_g_per_kwh": intensity, "carbon_source": carbon_src}
        cost_at = {}
        for thr, step in generalized_at.items():
            if step is None:
                cost_at[thr] = None
                continue
            cpu_at, rapl_at = self.at.get(step, (None, None))
            cpu_at = None if cpu_at is None else cpu_at / shared_by
            rapl_at = None if rapl_at is None else rapl_at / shared_by
            j_at = None
            if joules is not None:
                if rapl_at is not None:
                    j_at = rapl_at
                elif cpu_at is not None and cpu_total > 0:
                    j_at = joules * cpu_at / cpu_total
            rec = next((r for r in records if r["step"] == step), {})
            cost_at[thr] = {"step": step, "flops": flops_at(step),
                            "cpu_seconds": None if cpu_at is None else round(cpu_at, 3),
                            "wall_seconds": rec.get("time"),
                            "joules": None if j_at is None else round(j_at, 3), "co2_g": co2(j_at)}
        return cost, cost_at


def format_cost(cost: dict | None) -> str:
    """One line: '1.2 TFLOP · 3.4 CPU s · 5.6 J (estimated) · 0.0007 g CO2e (WORLD)'."""
    if not cost:
        return "cost: –"
    j = cost.get("joules")
    energy = f"{j:.3g} J ({cost.get('method')})" if j is not None else \
        f"energy missing: {cost.get('energy_missing', '?')}"
    where = f" ({cost['country']})" if cost.get("country") else ""
    co2 = f"{cost['co2_g']:.3g} g CO2e{where}" if cost.get("co2_g") is not None else "CO2 –"
    return f"{human_flops(cost.get('flops'))} · {cost.get('cpu_seconds', 0):.1f} CPU s · {energy} · {co2}"


def human_flops(n: float | None) -> str:
    if n is None:
        return "– FLOP"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} FLOP"
