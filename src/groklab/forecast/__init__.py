"""Forecast whether and when a run will grok, from its first steps (docs/forecast.md).

``groklab.forecast.forecast(run)`` reads a run directory (or records and a config) and returns a
``Forecast``: P(validation accuracy reaches 0.9 / 0.99 within the budget), the predicted step with
an 80 % interval, and the evidence. Modules, in the data's order: ``signals`` (features from the
history), ``dataset`` (labels, censoring, families), ``model`` (XGBoost classifier + isotonic
calibration, XGBoost AFT; JSON/UBJSON files), ``predict`` (the Forecast), ``live`` (a training
sink writing forecast.jsonl), ``corpus`` and ``evaluate`` (how the model is made and proven).
"""
from groklab.forecast.predict import Forecast, Target, forecast

__all__ = ["Forecast", "Target", "forecast"]


class _CallableModule(type(__import__("sys"))):
    """``groklab.forecast(run)`` calls :func:`forecast`; ``groklab.forecast.model`` etc. stay modules."""

    def __call__(self, *args, **kwargs) -> Forecast:
        return forecast(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
