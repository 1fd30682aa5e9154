"""The command line refuses what would silently mean something else: an empty value, a missing
command, options that cannot go together. Every refusal is one line, exit 2, before any
training starts and before any file is written."""

import pytest

from groklab.cli import build_parser, main


class Started(Exception):
    """Raised by the stand-ins below: the command got as far as starting a long job."""


@pytest.fixture
def no_jobs(tmp_path, monkeypatch):
    """Every entry point that trains is replaced by one that raises, and the test runs in an
    empty directory, so a command that was not refused fails fast and visibly."""
    import groklab
    import groklab.accel.race
    import groklab.accel.tune
    import groklab.gtn.run
    import groklab.sweep

    def started(*a, **k):
        raise Started("a long job was started")
    for mod, name in [(groklab, "run"), (groklab, "resume"), (groklab.accel.race, "run_race"),
                      (groklab.accel.tune, "run_tuned_race"), (groklab.sweep, "run_sweep"),
                      (groklab.gtn.run, "train"), (groklab.gtn.run, "resume")]:
        monkeypatch.setattr(mod, name, started)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_line_error(capsys, code: int, needle: str = "") -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("groklab: error: ") and err.count("\n") == 1, err
    assert needle in err, err
    return err


def test_a_bare_groklab_prints_help_and_starts_nothing(no_jobs, capsys):
    code = main([])
    out = capsys.readouterr()
    assert code == 2 and "usage: groklab" in out.out and "run" in out.out
    assert out.err.startswith("groklab: error: expected a command") and out.err.count("\n") == 1
    assert list(no_jobs.iterdir()) == []


@pytest.mark.parametrize("argv, needle", [
    (["run", "--preset", ""], "--preset '': expected a preset name (see `groklab presets`)"),
    (["run", "--preset", "  "], "--preset '  ': expected a preset name"),
    (["run", "--resume", ""], "--resume '': expected a run directory"),
    (["run", "--config", ""], "--config '': expected a TOML file path"),
    (["run", "--out", ""], "--out '': expected a directory path"),
    (["run", "--set", ""], "--set '': expected a non-empty value"),
    (["presets", ""], "NAME '': expected a non-empty value"),
    (["show", ""], "DIR '': expected a run directory"),
    (["race", "--recipes", ""], "--recipes '': expected a non-empty value"),
    (["race", "--task", ""], "--task '': expected a non-empty value"),
    (["race", "--tasks", ""], "--tasks '': expected a non-empty value"),
    (["race", "--seeds", ""], "--seeds '': expected a non-empty value"),
    (["race", "--thresholds", ""], "--thresholds '': expected a non-empty value"),
    (["race", "--set", ""], "--set '': expected a non-empty value"),
    (["race", "--out", ""], "--out '': expected a directory path"),
    (["export", "", "--mlflow"], "DIR '': expected a run directory"),
    (["export", "x", "--mlflow", "--tracking-uri", ""], "--tracking-uri '': expected a non-empty value"),
    (["sweep", ""], "SPEC '': expected a sweep spec file path"),
    (["sweep", "s.toml", "--out", ""], "--out '': expected a directory path"),
    (["sweep", "s.toml", "--address", ""], "--address '': expected a non-empty value"),
    (["sweep", "s.toml", "--storage", ""], "--storage '': expected a non-empty value"),
    (["gtn", "train", "--recipe", ""], "--recipe '': expected a non-empty value"),
    (["gtn", "train", "--resume", ""], "--resume '': expected a run directory"),
])
def test_empty_values_are_refused_before_anything_starts(no_jobs, capsys, argv, needle):
    one_line_error(capsys, main(argv), needle)
    assert list(no_jobs.iterdir()) == []


def _commands():
    """(words, parser) of every command, subcommands included."""
    import argparse
    for cmd, sub in build_parser()._subparsers._group_actions[0].choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            yield from (([cmd, name], p) for name, p in nested[0].choices.items())
        else:
            yield [cmd], sub


def test_every_string_option_of_every_command_refuses_an_empty_value(no_jobs, capsys):
    """Walks the parser, so a new string option is covered without a new line in the table."""
    checked = 0
    for words, p in _commands():
        positionals = ["x" for a in p._actions if not a.option_strings and a.nargs != "?"]
        for a in p._actions:
            if not a.option_strings or a.nargs == 0 or a.type not in (None, str) or a.choices:
                continue
            required = [w for b in p._actions if b.required and b.option_strings and b is not a
                        for w in (b.option_strings[-1], "x")]
            flag = a.option_strings[-1]
            one_line_error(capsys, main([*words, *positionals, *required, flag, ""]), f"{flag} '': expected")
            checked += 1
    assert checked >= 25
    assert list(no_jobs.iterdir()) == []


def test_resume_with_out_is_refused(no_jobs, capsys):
    one_line_error(capsys, main(["run", "--resume", "some/run", "--out", "elsewhere"]),
                   "--resume 'some/run' continues that directory; --out 'elsewhere' cannot go with it")
    assert list(no_jobs.iterdir()) == []


def test_resume_with_an_empty_preset_is_still_a_preset(no_jobs, capsys):
    from groklab.cli import cmd_run
    ns = build_parser().parse_args(["run", "--resume", "d"])
    ns.preset = ""  # as from a caller that skipped main's check
    one_line_error(capsys, cmd_run(ns), "--resume takes the run's own config")


def test_resolve_refuses_an_empty_preset():
    from groklab.config import ConfigError, resolve
    with pytest.raises(ConfigError, match="preset '': expected a preset name"):
        resolve("")


# --- race: every count bounded, every list checked --------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["--seeds", "99999999999"], "--seeds '99999999999': expected a count from 1 to 1,000 (3)"),
    (["--seeds", "1001"], "--seeds '1001': expected a count from 1 to 1,000"),
    (["--seeds", "0"], "--seeds '0': expected a count from 1 to 1,000"),
    (["--seeds", "1,99999999999"], "a list of distinct seeds from 0 to 4,294,967,295"),
    (["--seeds", "1,-2"], "a list of distinct seeds"),
    (["--seeds", "1,,2"], "--seeds '1,,2': expected comma-separated items, none of them empty"),
    (["--seeds", "1,1"], "--seeds '1,1': an item is repeated"),
    (["--seeds", ",".join(map(str, range(1001)))], "expected a count from 1 to 1,000"),
    (["--thresholds", ","], "--thresholds ',': expected comma-separated items"),
    (["--thresholds", "0.9,"], "--thresholds '0.9,': expected comma-separated items"),
    (["--thresholds", "nan"], "--thresholds 'nan': expected distinct accuracies in (0, 1]"),
    (["--thresholds", "0.9,0.9"], "an item is repeated"),
    (["--thresholds", "1.5"], "--thresholds '1.5': expected distinct accuracies in (0, 1]"),
    (["--recipes", "mlp-adamw,"], "--recipes 'mlp-adamw,': expected comma-separated items"),
    (["--recipes", "mlp-adamw,mlp-adamw"], "an item is repeated"),
    (["--recipes", "nope"], "--recipes: unknown preset 'nope'; allowed: "),
    (["--task", "nope"], "--task: unknown preset 'nope'; allowed: own, "),
    (["--tasks", "add113,"], "--tasks 'add113,': expected comma-separated items"),
    (["--tasks", "nope"], "--tasks: unknown race task 'nope'; allowed: add113"),
    (["--steps", "0"], "--steps 0: out of range; allowed: an integer from 1 to 1,000,000,000"),
    (["--steps", "99999999999"], "--steps 99999999999: out of range; allowed: an integer from 1 to"),
    (["--eval-every", "0"], "--eval-every 0: out of range; allowed: an integer from 1 to"),
    (["--eval-every", "99999999999"], "--eval-every 99999999999: out of range"),
    (["--threads", "0"], "--threads 0: out of range; allowed: an integer from 1 to 1,024"),
    (["--threads", "99999999"], "--threads 99999999: out of range; allowed: an integer from 1 to 1,024"),
    (["--tune", "-1"], "--tune -1: out of range; allowed: an integer from 0 to 10,000"),
    (["--tune", "99999999999"], "--tune 99999999999: out of range"),
    (["--tune", "1", "--tune-split", "-1"],
     "--tune-split -1: out of range; allowed: an integer from 0 to 4,294,967,295"),
    (["--tune", "1", "--tune-split", "99999999999"], "--tune-split 99999999999: out of range"),
    (["--tune", "1", "--task", "nanda"], "--task and --tasks/--tune do not mix"),
])
def test_race_options_are_bounded_and_checked_before_anything_starts(no_jobs, capsys, argv, needle):
    import torch
    threads = torch.get_num_threads()
    one_line_error(capsys, main(["race", *argv]), needle)
    assert list(no_jobs.iterdir()) == [] and torch.get_num_threads() == threads


@pytest.mark.parametrize("argv", [["race"], ["race", "--tune", "2", "--tasks", "add113,mul97"],
                                  ["race", "--seeds", "1000", "--thresholds", "1"]])
def test_race_options_within_bounds_reach_the_race(no_jobs, argv):
    with pytest.raises(Started):
        main(argv)


# --- sweep --storage: a database server that does not answer --------------------------------------

OPT_SPEC = ('name = "o"\npreset = "prieto"\nmode = "optimize"\n[base]\ntask.p = 11\ntrain.steps = 2\n'
            '[axes]\n"optim.lr" = {log = [1e-3, 1e-1]}\n[optimize]\nn_trials = 1\n')


def test_a_storage_server_that_never_answers_is_one_line_within_its_timeout(tmp_path, capsys, monkeypatch):
    """psycopg's own default waits over two minutes; the URL gets connect_timeout (1 s here)."""
    import socket
    import time
    pytest.importorskip("optuna")
    pytest.importorskip("psycopg")
    import groklab.sweep.optimize as opt
    monkeypatch.setattr(opt, "STORAGE_CONNECT_TIMEOUT", 1)
    (tmp_path / "o.toml").write_text(OPT_SPEC)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)  # accepts the connection, never speaks PostgreSQL
        url = f"postgresql://u@127.0.0.1:{srv.getsockname()[1]}/db"
        t0 = time.monotonic()
        code = main(["sweep", str(tmp_path / "o.toml"), "--storage", url, "--out", str(tmp_path / "out")])
        assert time.monotonic() - t0 < 10
    one_line_error(capsys, code, f"--storage '{url}': cannot open the study")
    assert not (tmp_path / "out").exists()


def test_storage_urls_get_a_connect_timeout_unless_they_name_one():
    from groklab.sweep.optimize import STORAGE_CONNECT_TIMEOUT, storage_url
    t = f"connect_timeout={STORAGE_CONNECT_TIMEOUT}"
    assert storage_url("mysql+pymysql://u@h/db").endswith(f"/db?{t}")
    assert storage_url("postgresql://u@h/db?sslmode=require").endswith(f"?sslmode=require&{t}")
    assert storage_url("postgresql://u@h/db?connect_timeout=3").endswith("?connect_timeout=3")
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"
