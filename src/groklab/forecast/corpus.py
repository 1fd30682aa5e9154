"""The forecast corpus: labelled runs made by ordinary grid sweeps, read back as one table.

A corpus spec is a TOML file naming sweep specs (paths relative to it)::

    name = "forecast-corpus"
    sweeps = ["mlp_adamw.toml", "tf_adamw.toml"]

``groklab forecast corpus SPEC --out DIR`` runs each sweep into ``DIR/<sweep name>/`` with
``groklab.sweep.run_sweep`` (local workers, the ensemble trainer where it measures faster), so
the corpus is resumable exactly as a sweep is: running the command again continues it.
``load_runs(DIR)`` reads every finished run back (config, metrics, summary) for training and
evaluating the forecast (groklab.forecast.dataset).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groklab.config import ConfigError, RunConfig, load_toml

CORPUS_KEYS = {"name", "sweeps"}


@dataclass
class CorpusSpec:
    name: str
    sweeps: list[Path]


def load_corpus_spec(path: str | Path) -> CorpusSpec:
    """Read and check a corpus spec and every sweep spec it names; one-line ConfigError if bad."""
    from groklab.sweep.spec import NAME_RE, load_spec
    path = Path(path)
    d = load_toml(path)
    unknown = set(d) - CORPUS_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown corpus key(s) {sorted(unknown)}; allowed: name, sweeps")
    name = d.get("name", "corpus")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{path}: name = {name!r}: use letters, digits, '_', '.' or '-'")
    sweeps = d.get("sweeps")
    if not isinstance(sweeps, list) or not sweeps or not all(isinstance(s, str) for s in sweeps):
        raise ConfigError(f"{path}: sweeps = {sweeps!r}: expected a non-empty list of sweep spec paths")
    paths = [p if p.is_absolute() else path.parent / p for p in map(Path, sweeps)]
    names = []
    for p in paths:
        spec = load_spec(p)
        if spec.mode != "grid":
            raise ConfigError(f"{p}: a corpus sweep must be mode = \"grid\", not {spec.mode!r}")
        names.append(spec.name)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: two sweeps are named {sorted(dup)[0]!r}; each needs its own directory")
    return CorpusSpec(name, paths)


def run_corpus(spec_path: str | Path, out: str | Path, workers: int | None = None, log=None) -> None:
    """Run (or continue) every sweep of the corpus into ``out/<sweep name>``."""
    import sys

    from groklab.sweep import run_sweep
    from groklab.sweep.spec import load_spec
    log = log or sys.stdout
    cs = load_corpus_spec(spec_path)
    out = Path(out)
    for p in cs.sweeps:
        spec = load_spec(p)
        print(f"corpus {cs.name}: sweep {spec.name} ({len(spec.points())} runs) -> {out / spec.name}",
              file=log, flush=True)
        run_sweep(spec, out / spec.name, workers=workers, spec_text=p.read_text())


def iter_run_dirs(root: str | Path):
    """Every run directory under ``root`` (a corpus, a sweep, or a single run), sorted."""
    root = Path(root)
    if (root / "metrics.jsonl").is_file():
        yield root
        return
    for d in sorted(root.rglob("metrics.jsonl")):
        yield d.parent


def load_runs(root: str | Path) -> list[dict[str, Any]]:
    """{"dir", "config", "records", "summary"} for every run under ``root`` whose summary has a
    final status (completed, early_stopped, nan, pruned); running or broken runs are skipped."""
    from groklab.runs.read import read_metrics, read_object, read_summary
    runs = []
    for d in iter_run_dirs(root):
        try:
            summary = read_summary(d / "summary.json")
            cfg = RunConfig.from_dict(read_object(d / "config.json"))
            if summary.get("status") not in ("completed", "early_stopped", "nan", "pruned"):
                continue
            recs = read_metrics(d / "metrics.jsonl")
        except (OSError, ValueError, ConfigError):
            continue          # a running, broken or damaged run is not a labelled one
        if recs:
            runs.append({"dir": str(d), "config": cfg, "records": recs, "summary": summary})
    return runs
