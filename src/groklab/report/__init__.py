"""Reports: figures and the self-contained HTML page of a run."""
from groklab.report.html import write_report, write_run_report

__all__ = ["write_report", "write_run_report"]
