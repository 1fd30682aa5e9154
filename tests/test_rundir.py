"""Run-directory files: JSON that refuses non-numbers, jsonl truncation on resume, directory locks."""
import errno
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from groklab.config import ConfigError
from groklab.runs.lock import DirectoryLocked, dir_lock
from groklab.runs.rundir import (
    JsonlLogger,
    atomic_write_text,
    is_run_dir,
    read_json,
    read_jsonl,
    read_run_json,
    truncate_jsonl,
    write_json,
)


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_run_json_with_a_non_finite_constant_is_damaged_and_says_why(tmp_path, const):
    p = tmp_path / "summary.json"
    p.write_text('{"final_val_acc": %s}' % const)
    with pytest.raises(ConfigError, match=f"is damaged: not valid JSON \\({const} is not a JSON number\\)"):
        read_run_json(p)


def test_write_json_takes_numpy_and_torch_numbers_and_names_what_it_cannot(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float32(1.5), "n": np.int64(3), "t": torch.tensor([1, 2])})
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "n": 3, "t": [1, 2]}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(tmp_path / "b.json", {"o": object()})


def test_json_files_are_indented_and_jsonl_takes_numpy_numbers(tmp_path):
    write_json(tmp_path / "deep" / "er" / "c.json", {"a": [1, 2], "b": {"c": None}})   # parents made
    assert (tmp_path / "deep/er/c.json").read_text() == \
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "c": null\n  }\n}\n'
    log = JsonlLogger(tmp_path / "m.jsonl")
    log.log({"step": np.int64(2), "acc": np.float32(0.5)})
    log.close()
    assert read_jsonl(tmp_path / "m.jsonl") == [{"step": 2, "acc": 0.5}]


def test_read_jsonl_skips_blank_lines_and_a_torn_last_line_but_not_a_torn_line_inside(tmp_path):
    """An unterminated last line is a live writer's half line; a broken line with lines after
    it is damage, named by file and line."""
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 0}\n\n{"step": 2}\n{"step": 3, "ac')
    assert read_jsonl(p) == [{"step": 0}, {"step": 2}]
    p.write_text('{"step": 0}\n\n{"step": 1, "acc\n{"step": 2}\n')
    with pytest.raises(ConfigError, match=r"m\.jsonl' is damaged at line 3: not valid JSON"):
        read_jsonl(p)
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_an_atomic_write_goes_through_a_hidden_sibling(tmp_path, monkeypatch):
    """The temporary file sits in the target's directory (os.replace is atomic only within one
    filesystem) under a dot name (directory scans skip it while it is being written)."""
    import os
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(Path(src)), real(src, dst)))
    write_json(tmp_path / "summary.json", {"a": 1})
    assert len(seen) == 1 and seen[0].parent == tmp_path and seen[0].name.startswith(".summary.json.")
    assert read_json(tmp_path / "summary.json") == {"a": 1}


def test_a_failed_atomic_write_raises_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path / "taken", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_unreadable_run_json_and_what_a_run_directory_is(tmp_path, monkeypatch):
    p = tmp_path / "summary.json"
    p.write_text("{}")

    def denied(self, *args, **kwargs):   # what a file without read permission does (these tests may run as root)
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(Path, "open", denied)
        with pytest.raises(ConfigError, match=f"^{re.escape(repr(str(p)))} cannot be read: Permission denied$"):
            read_run_json(p)
    assert not is_run_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert is_run_dir(tmp_path) and not is_run_dir(tmp_path / "nowhere")


def test_truncate_keeps_the_records_before_the_step(tmp_path):
    p = tmp_path / "metrics.jsonl"
    recs = [{"step": 0}, {"step": 5}, {"step": 10}]
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    truncate_jsonl(p, 6)
    assert read_jsonl(p) == [{"step": 0}, {"step": 5}]
    truncate_jsonl(tmp_path / "absent.jsonl", 3)          # nothing to truncate: no file made
    assert not (tmp_path / "absent.jsonl").exists()


def test_a_locked_directory_names_its_holder(tmp_path):
    """The refusal names the holder's pid, host, command and start time (from .lock.json)."""
    code = ("import sys, time\nfrom groklab.runs.lock import dir_lock\n"
            "with dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "--flag"], stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(DirectoryLocked) as e:
                with dir_lock(tmp_path, "run directory"):
                    pass
            held = json.loads((tmp_path / ".lock.json").read_text())
            msg = str(e.value)
            assert msg.startswith(f"run directory {str(tmp_path)!r} is in use by pid {proc.pid} ")
            assert f"on {socket.gethostname()} (-c {tmp_path} --flag, since {held['since']})" in msg
            assert time.strptime(held["since"], "%Y-%m-%d %H:%M:%S")
        finally:
            proc.kill()
    with dir_lock(tmp_path):       # released when the holder dies
        pass


def test_a_lock_without_a_readable_holder_record_says_another_process(tmp_path):
    code = ("import sys, time, os\nfrom groklab.runs.lock import dir_lock\n"
            "with dir_lock(sys.argv[1]):\n    os.remove(os.path.join(sys.argv[1], '.lock.json'))\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "held"
            with pytest.raises(DirectoryLocked, match="is in use by another process; wait"):
                with dir_lock(tmp_path):
                    pass
        finally:
            proc.kill()


@pytest.mark.parametrize("record, says", [
    ("[1, 2]", "another process"),
    ('{"pid": 7, "host": "h", "command": "a\\nb\\rc", "since": "then"}', "pid 7 on h (a b c, since then)"),
    ("[" * 100_000, "another process"),
])
def test_a_foreign_holder_record_still_gives_one_line(tmp_path, record, says):
    """The refusal reads .lock.json, which anyone may have written: whatever it holds, the
    message stays one line."""
    code = ("import sys, time\nfrom groklab.runs.lock import dir_lock\n"
            "with dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "held"
            (tmp_path / ".lock.json").write_text(record)
            with pytest.raises(DirectoryLocked) as e:
                with dir_lock(tmp_path):
                    pass
            assert f"is in use by {says}; wait" in str(e.value) and "\n" not in str(e.value)
        finally:
            proc.kill()
