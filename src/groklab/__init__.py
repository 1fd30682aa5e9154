"""groklab: run, measure, accelerate and explore grokking experiments."""
from groklab.api import resolve, resume, run
from groklab.config import ConfigError, RunConfig
from groklab.presets import PRESETS, get_preset
from groklab.train.loop import Run

# isort: split
from groklab import forecast  # last, after the rest: callable, groklab.forecast(run) -> Forecast

__version__ = "0.1.0"
__all__ = ["run", "resume", "resolve", "RunConfig", "ConfigError", "Run", "PRESETS", "get_preset", "forecast"]
