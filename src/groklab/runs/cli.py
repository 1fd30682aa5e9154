"""``groklab export``: a run directory into TensorBoard / MLflow (``groklab.runs.export``)."""
from __future__ import annotations


def cmd_export(args) -> int:
    from groklab.runs.export import export_run
    for line in export_run(args.dir, tensorboard=args.tensorboard, mlflow=args.mlflow,
                           tracking_uri=args.tracking_uri):
        print(line)
    return 0


def register(subparsers) -> None:
    e = subparsers.add_parser("export", help="write a run's curves and measures to TensorBoard / MLflow")
    e.add_argument("dir", help="a run directory")
    e.add_argument("--tensorboard", action="store_true", help="event files in DIR/tensorboard")
    e.add_argument("--mlflow", action="store_true", help="an MLflow run (default store DIR/mlruns)")
    e.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or DIR/mlruns)")
    e.set_defaults(func=cmd_export)
