"""report.html of a hand-made run directory: numbers formatted, the progress phases as a table
with their rule as a footnote, the resolved config as dotted keys, every value escaped."""
from __future__ import annotations

import json
import re
from pathlib import Path

from groklab.report.html import fmt, write_run_report

RULE = "memorization ends at the excluded-loss minimum"


def make_run(d: Path, summary: dict, config: dict | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config or {
        "preset": "default", "task": {"name": "modular", "op": "x+y", "p": 97},
        "optim": {"lr": 0.001, "wd": 1.0}, "model": {"hidden": [32, 32]}, "train": {"steps": 6000}}))
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def text_of(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", page)


def test_numbers_are_formatted():
    assert fmt(0.99946865) == "0.9995"
    assert fmt(2760) == "2,760" and fmt(126.3456, " s") == "126.3 s" and fmt(12345.67) == "12,345.7"
    assert fmt(1.234567e-05) == "1.235e-05" and fmt(0.0) == "0" and fmt(None) == "–"
    assert fmt(float("nan")) == "nan" and fmt(True) == "True" and fmt("x") == "x"


def test_report_formats_numbers_tabulates_phases_and_shows_the_config(tmp_path):
    d = make_run(tmp_path / "r", {
        "status": "early_stopped", "phase": "grokking", "steps_done": 2760, "wall_seconds": 126.3456,
        "memorized_at": {"0.9": 130}, "generalized_at": {"0.9": 2310},
        "final_train_acc": 1.0, "final_val_acc": 0.99946865037, "final_val_loss": 1.234567e-05,
        "phases": {"memorization_end": 140, "circuit_formation_end": 1900, "cleanup_end": None,
                   "weight_decay_peak": 2000, "rule": RULE}})
    page = write_run_report(d).read_text()
    text = text_of(page)
    assert "0.99946865037" not in page and "0.9995" in text and "2,760" in text
    assert "126.3 s" in text and "1.235e-05" in text
    assert "{" not in text.split("Progress phases")[1].split("Config")[0]  # no raw JSON dict
    phases = page.split("Progress phases")[1].split("</table>")[0]
    rows = re.findall(r"<tr><th>([^<]+)</th><td[^>]*>([^<]+)</td></tr>", phases)
    assert rows == [("memorization ends", "140"), ("circuit formation ends", "1,900"),
                    ("weight decay is fastest", "2,000"), ("cleanup ends", "–")]
    assert RULE in page.split("</table>", 2)[2].split("<h2>Config")[0]  # the footnote, below the table
    config = page.split("<h2>Config</h2>")[1]
    for key, value in (("optim.lr", "0.001"), ("task.p", "97"), ("train.steps", "6,000"), ("model.hidden", "[32, 32]")):
        assert re.search(rf"<th>{re.escape(key)}</th><td[^>]*>{re.escape(value)}</td>", config), key


def test_report_escapes_every_value(tmp_path):
    xss = "<script>alert(1)</script>"
    d = make_run(tmp_path / "r", {"status": xss, "phase": xss, "final_val_acc": xss, "message": xss,
                                  "phases": {xss: 1, "rule": xss}}, config={"preset": xss, xss: {xss: xss}})
    page = write_run_report(d).read_text()
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 8
