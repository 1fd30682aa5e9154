"""Learning from the user's runs: the shipped corpus plus finished runs, refitted.

``learn(dirs, out)`` is ``groklab forecast learn``; ``sweep_model(sweep_dir)`` is what a sweep
with ``[prune] learn = true`` forecasts with: the shipped model until 5 of its points have
finished, then a model refitted on the corpus and the finished points, refitted again each time
the number of finished points doubles (5, 10, 20, 40, ...), kept in ``SWEEP_DIR/forecast-learned``
(written whole, then renamed into place, under a lock, so parallel workers never read half a model).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT = 5.0          # one of the user's runs weighs this many corpus runs
FIRST = 5             # a sweep refits once this many of its points have finished
ROUNDS = 150          # boosting rounds of a refit inside a sweep (the shipped model: 300)


def fit_and_save(runs: list[dict[str, Any]], out: Path, rounds: int, meta: dict,
                 weights: list[float] | None = None):
    """Fit on ``runs`` (each row weighted by its run's weight) and write the model directory with
    the records it learned from packed beside it; returns (model, table)."""
    import xgboost

    from groklab.forecast import model as M
    from groklab.forecast import records
    from groklab.forecast.dataset import build_table
    table = build_table(runs)
    extra = None if weights is None else np.asarray(weights, float)[table.run]
    m = M.fit(table, rounds=rounds, extra=extra)
    out.mkdir(parents=True, exist_ok=True)
    packed = records.write(runs, [r["dir"] for r in runs], out / records.FILE).read_bytes()
    m.meta.update({**meta, "records_sha256": hashlib.sha256(packed).hexdigest(), "rounds": rounds,
                   "xgboost": xgboost.__version__})
    M.save(m, out)
    return m, table


def learn(mine: list[dict[str, Any]], out: Path, rounds: int, weight: float = WEIGHT):
    """The shipped corpus's records plus ``mine``, each of them weighing ``weight`` corpus runs."""
    from groklab.forecast import records
    from groklab.forecast.model import shipped_dir
    corpus = records.read(shipped_dir() / records.FILE)
    return fit_and_save(corpus + mine, out, rounds,
                        {"corpus": "shipped", "learned_from": len(mine), "weight": weight},
                        [1.0] * len(corpus) + [weight] * len(mine))


def _finished(sweep_dir: Path) -> list[dict[str, Any]]:
    from groklab.forecast import records
    pts = sweep_dir / "points"
    return records.load_dir(pts) if pts.is_dir() else []


def sweep_model(sweep_dir: str | Path, rounds: int = ROUNDS):
    """The model a learning sweep forecasts with now (see the module's docstring)."""
    from groklab.forecast.model import default_model, load
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "forecast-learned"
    with open(sweep_dir / "forecast-learned.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = load(out) if (out / "manifest.json").is_file() else None
        n_have = int(have.meta.get("learned_from", 0)) if have else 0
        mine = _finished(sweep_dir)
        if len(mine) < FIRST or (have is not None and len(mine) < 2 * n_have):
            return have or default_model()
        tmp = sweep_dir / "forecast-learned.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            learn(mine, tmp, rounds)
        except ValueError:        # e.g. one class only among the rows: keep what we had
            shutil.rmtree(tmp, ignore_errors=True)
            return have or default_model()
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return load(out)
