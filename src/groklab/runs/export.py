"""Export a run's curves to the trackers people already use: TensorBoard and MLflow.

Both are *sinks* for the training loop (``.log(step, record)``, ``.close()``), so they stream
while a run trains (``groklab run --tensorboard`` or ``groklab.run(cfg, sinks=[...])``), and
``export_run(run_dir, ...)`` replays a finished run directory (metrics.jsonl and
measures.jsonl) into them afterwards (``groklab export DIR --tensorboard --mlflow``).

Each needs its optional extra; without it the constructor raises ``ConfigError`` naming the
extra, so the command line exits with code 2 and a one-line message instead of a traceback.
MLflow writes offline into a file store inside the run directory unless ``tracking_uri`` (or
the ``MLFLOW_TRACKING_URI`` environment variable) points elsewhere: a path, ``file://``,
``http(s)://`` (an MLflow server) or ``sqlite:///`` (``TRACKING_SCHEMES``). A database URI
(``postgresql://``, ``mysql://``) is refused: MLflow retries its connection for minutes with no
setting to shorten it; put ``mlflow server`` in front of the database instead. Every request to
a server has a timeout and a bounded number of retries (``HTTP_LIMITS``, unless the
``MLFLOW_HTTP_REQUEST_*`` variables are set), and any failure to reach the tracker is one
``ConfigError`` line.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

from groklab.config import ConfigError

# metrics.jsonl keys -> TensorBoard tags: "group/series" puts train and val in one section.
TB_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_acc": "accuracy/train",
           "val_acc": "accuracy/val", "lr": "optim/lr", "weight_norm": "optim/weight_norm"}
SKIP = {"step", "time"}

TRACKING_SCHEMES = ("file", "http", "https", "sqlite")  # and a plain path
# MLflow's own defaults (120 s per request, 7 retries with a doubling backoff) wait minutes on an
# address where no server answers; these give up after about 25 s.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def check_tracking_uri(uri: str, source: str = "--tracking-uri") -> str:
    """``uri`` if it is a path, file://, http(s)://HOST or sqlite:///FILE; else a one-line ConfigError."""
    allowed = "allowed: a path, file://PATH, http(s)://HOST[:PORT], sqlite:///FILE"
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"{source} {uri!r}: expected an MLflow tracking URI; {allowed}")
    try:
        u = urlparse(uri)
        u.port  # noqa: B018  (a port that is not a number or out of range raises ValueError)
    except ValueError as e:
        raise ConfigError(f"{source} {uri[:200]!r}: {e}; {allowed}") from None
    scheme = u.scheme.lower()
    if scheme in ("postgresql", "mysql", "mssql") or scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        raise ConfigError(f"{source} {uri[:200]!r}: a database store is not supported (MLflow retries "
                          f"its connection for minutes); run `mlflow server` in front of it and give "
                          f"its http:// address")
    if scheme and scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"{source} {uri[:200]!r}: scheme {scheme!r} is not supported; {allowed}")
    if scheme in ("http", "https") and not u.hostname:
        raise ConfigError(f"{source} {uri[:200]!r}: no host; {allowed}")
    return uri


@contextlib.contextmanager
def bounded_http():
    """MLflow's HTTP timeout and retries set to ``HTTP_LIMITS`` where the user has not set them."""
    added = [k for k in HTTP_LIMITS if k not in os.environ]
    os.environ.update({k: HTTP_LIMITS[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _reason(e: BaseException) -> str:
    """The short cause of a failed request: 'Connection refused', 'Read timed out', ..."""
    text = f"{type(e).__name__}: {e}"
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    if "timed out" in text.lower():
        key = "MLFLOW_HTTP_REQUEST_TIMEOUT"
        return f"no answer within {os.environ.get(key, HTTP_LIMITS[key])} s"
    line = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return line if len(line) <= 160 else line[:159] + "…"


def scalars(record: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    """The finite-or-not numeric fields of one record (bools and nested dicts left out)."""
    for k, v in record.items():
        if k in SKIP or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        yield prefix + k, float(v)


class TensorBoardSink:
    """Writes every logged record as TensorBoard scalars under ``log_dir``.

    Args:
        log_dir: directory for the event files (``run_dir / "tensorboard"`` from the CLI).
        config: optional resolved config (dict), written once as text so the run is identifiable.

    ``log(step, record, prefix)``: numeric fields of ``record`` at ``step``; keys outside
    ``TB_TAGS`` get ``prefix`` (``"measures/"`` when replaying measures.jsonl).
    """

    def __init__(self, log_dir: str | Path, config: dict | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(f"TensorBoard export needs the tensorboard extra "
                              f"(pip install 'groklab[tensorboard]'): {e}") from None
        self.log_dir, self.config = Path(log_dir), config
        self._make, self._w = SummaryWriter, None

    def _writer(self, step: int):
        # Created at the first record, not here: the CLI builds its sinks before the run
        # directory exists, and `groklab run` refuses an output directory that already exists.
        if self._w is None:
            # A resume logs again from its checkpoint: purge_step makes TensorBoard drop the
            # earlier files' events from that step on, as the loop truncates metrics.jsonl.
            resumed = self.log_dir.is_dir() and any(self.log_dir.glob("events.out.tfevents.*"))
            self._w = self._make(str(self.log_dir), purge_step=int(step) if resumed else None)
            if self.config is not None:
                self._w.add_text("config", "```\n" + json.dumps(self.config, indent=2) + "\n```", 0)
        return self._w

    def log(self, step: int, record: dict[str, Any], prefix: str = "") -> None:
        w = self._writer(step)
        for k, v in scalars(record):
            w.add_scalar(TB_TAGS.get(k, prefix + k), v, int(step))

    def close(self) -> None:
        if self._w is not None:
            self._w.flush()
            self._w.close()


class MLflowSink:
    """Logs every record as MLflow metrics of one MLflow run (offline file store by default).

    Args:
        run_dir: the groklab run directory; the default store is ``run_dir / "mlruns"``.
        config: optional resolved config (dict); its leaves become MLflow params ("optim.lr").
        tracking_uri: an MLflow tracking URI; default ``$MLFLOW_TRACKING_URI`` or the file store.
        experiment: MLflow experiment name.
    """

    def __init__(self, run_dir: str | Path, config: dict | None = None,
                 tracking_uri: str | None = None, experiment: str = "groklab"):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ConfigError(f"MLflow export needs the mlflow extra "
                              f"(pip install 'groklab[mlflow]'): {e}") from None
        run_dir = Path(run_dir)
        if tracking_uri is not None:
            uri = check_tracking_uri(tracking_uri)
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            uri = check_tracking_uri(os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI")
        else:
            # MLflow 3 refuses its file store unless asked; an offline export into the run
            # directory is exactly the case that opt-out exists for.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlruns").resolve().as_uri()
        self.tracking_uri, self._broken = uri, False
        self._c = self._call(MlflowClient, tracking_uri=uri)
        exp = self._call(self._c.get_experiment_by_name, experiment)
        eid = exp.experiment_id if exp else self._call(self._c.create_experiment, experiment)
        self.run_id = self._call(self._c.create_run, eid, run_name=run_dir.name,
                                 tags={"groklab.run_dir": str(run_dir)}).info.run_id
        if config is not None:
            from mlflow.entities import Param
            params = [Param(k, str(v)[:500]) for k, v in _leaves(config)]
            for i in range(0, len(params), 100):  # MLflow caps a batch at 100 params
                self._call(self._c.log_batch, self.run_id, params=params[i:i + 100])

    def _call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with bounded HTTP requests; any failure is one ConfigError line."""
        with bounded_http():
            try:
                return fn(*args, **kwargs)
            except ConfigError:
                raise
            except Exception as e:  # MlflowException, requests' and SQLAlchemy's errors, a missing driver
                self._broken = True
                raise ConfigError(f"MLflow tracking URI {self.tracking_uri[:200]!r}: cannot reach it "
                                  f"({_reason(e)})") from None

    def log(self, step: int, record: dict[str, Any], prefix: str = "") -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        # NaN/inf left out so that any MLflow store takes the batch; summary.json says it diverged
        ms = [Metric(k, v, now, int(step)) for k, v in scalars(record, prefix) if math.isfinite(v)]
        if ms:
            self._call(self._c.log_batch, self.run_id, metrics=ms)

    def close(self, status: str = "FINISHED") -> None:
        if not self._broken:  # a tracker that failed once is not asked (and waited for) again
            self._call(self._c.set_terminated, self.run_id, status=status)


def _leaves(d: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def export_run(run_dir: str | Path, tensorboard: bool = False, mlflow: bool = False,
               tracking_uri: str | None = None) -> list[str]:
    """Replay a run directory's metrics.jsonl and measures.jsonl into the chosen trackers.

    Returns one line per tracker saying where it wrote. Measures go under ``measures/``.
    """
    from groklab.runs.rundir import read_json, read_jsonl
    d = Path(run_dir)
    if not (d / "config.json").is_file():
        raise ConfigError(f"{str(d)!r} is not a run directory (no config.json)")
    if not (tensorboard or mlflow):
        raise ConfigError("nothing to export: pass --tensorboard and/or --mlflow")
    if tracking_uri is not None:
        if not mlflow:
            raise ConfigError("--tracking-uri is read only with --mlflow")
        check_tracking_uri(tracking_uri)
    try:
        config = read_json(d / "config.json")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{str(d / 'config.json')!r} is unreadable: {e}") from None
    metrics, measures = read_jsonl(d / "metrics.jsonl"), read_jsonl(d / "measures.jsonl")
    sinks: list[Any] = []
    done = []
    if tensorboard:
        sinks.append(TensorBoardSink(d / "tensorboard", config=config))
        done.append(f"tensorboard: {d / 'tensorboard'}  (view: tensorboard --logdir {d / 'tensorboard'})")
    if mlflow:
        s = MLflowSink(d, config=config, tracking_uri=tracking_uri)
        sinks.append(s)
        done.append(f"mlflow: run {s.run_id} in {s.tracking_uri}")
    try:
        for s in sinks:
            for r in metrics:
                s.log(r.get("step", 0), r)
            for r in measures:
                s.log(r.get("step", 0), r, prefix="measures/")
    finally:
        for s in sinks:
            s.close()
    return done
