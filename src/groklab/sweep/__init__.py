"""Sweeps: grid phase diagrams, Optuna optimisation, local and Ray executors, a vmap ensemble."""
from groklab.sweep.spec import Axis, Point, Spec, load_spec, parse_spec

__all__ = ["Axis", "Point", "Spec", "load_spec", "parse_spec", "run_sweep"]


def run_sweep(spec: Spec | str, out, executor: str = "local", workers: int | None = None,
              address: str | None = None, storage: str | None = None, ensemble: bool | None = None,
              spec_text: str | None = None):
    """Run (or continue) a sweep from Python; returns the rows (grid) or the Optuna study.

    Every point's config is checked before the sweep directory is created or anything runs."""
    from pathlib import Path

    from groklab.sweep.executors import make_executor
    from groklab.sweep.grid import check_points, open_sweep_dir, run_grid
    if not isinstance(spec, Spec):
        spec_text = Path(spec).read_text()
        spec = load_spec(spec)
    out = Path(out)
    if spec.mode == "optimize":
        from groklab.sweep.optimize import check_space, run_optimize
        check_space(spec)
        open_sweep_dir(out, spec, spec_text)
        ex = make_executor(executor, out, workers, address)
        return run_optimize(spec, out, ex, storage=storage)
    check_points(spec.points(), spec)
    open_sweep_dir(out, spec, spec_text)
    ex = make_executor(executor, out, workers, address)
    return run_grid(spec, out, ex, spec_text=spec_text, ensemble=ensemble)
