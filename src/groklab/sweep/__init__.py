"""Sweeps: grid phase diagrams, Optuna optimisation, local and Ray executors, a vmap ensemble."""
from groklab.sweep.spec import Axis, Point, Spec, load_spec, parse_spec

__all__ = ["Axis", "Point", "Spec", "load_spec", "parse_spec", "run_sweep"]


def run_sweep(spec: Spec | str, out, executor="local", workers: int | None = None,
              address: str | None = None, storage: str | None = None, ensemble: bool | None = None,
              spec_text: str | None = None):
    """Run (or continue) a sweep from Python; returns the rows (grid) or the Optuna study.

    Every option, every point's config, the storage and ``out`` are checked before the sweep
    directory is created or anything runs; then the directory is locked for the whole sweep
    (a second driver on it gets a ``DirectoryLocked`` error). ``executor`` is "local", "ray",
    or an executor object (see groklab.sweep.executors), which this call closes."""
    from pathlib import Path

    from groklab.sweep.executors import check_executor, make_executor
    from groklab.sweep.grid import check_points, run_grid
    from groklab.sweep.sweepdir import check_out, open_sweep_dir
    if not isinstance(spec, Spec):
        path = Path(spec)
        spec = load_spec(path)
        spec_text = path.read_text()
    if str(out).strip() == "":
        from groklab.config import ConfigError
        raise ConfigError("--out '': expected a directory path")
    out = Path(out)
    _check_options(spec, storage, ensemble)
    if isinstance(executor, str):
        check_executor(executor, workers, address)
    study = None
    if spec.mode == "optimize":
        from groklab.sweep.optimize import check_space, open_study
        check_space(spec)
        check_out(out, spec)
        if storage is not None:  # a database: reach it (and make the study) before any directory
            study = open_study(spec, out, storage)
    else:
        check_points(spec.points(), spec)
        check_out(out, spec)
    ex = res = None
    try:
        ex = make_executor(executor, out, workers, address) if isinstance(executor, str) else executor
        with open_sweep_dir(out, spec, spec_text):
            if spec.mode == "optimize":
                from groklab.sweep.optimize import run_optimize
                res = run_optimize(spec, out, ex, storage=storage, study=study)
            else:
                res = run_grid(spec, out, ex, ensemble=ensemble)
    except BaseException:
        if ex is not None:
            ex.close(cancel=True)
        raise
    finally:
        if spec.mode == "optimize":  # leave no database connection open behind the sweep
            from groklab.sweep.optimize import release_study
            release_study(study if study is not None else res)
    ex.close()
    return res


def _check_options(spec: Spec, storage, ensemble) -> None:
    from groklab.config import ConfigError
    if storage is not None and (spec.mode != "optimize" or not isinstance(storage, str) or not storage):
        raise ConfigError(f"--storage {storage!r} is only used in optimize mode, as a database URL "
                          f"(sqlite:///FILE, postgresql://USER@HOST/DB)")
    if ensemble is not None and (spec.mode != "grid" or not isinstance(ensemble, bool)):
        raise ConfigError(f"--ensemble {ensemble!r} is only used in grid mode (optimize mode runs "
                          f"trials singly)")
