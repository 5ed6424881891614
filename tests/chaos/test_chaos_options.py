"""``python -m bench.chaos`` options: bad values exit with a usage error before anything is started."""

import pytest

from bench.chaos import config_from_args, parse_args


@pytest.mark.parametrize("argv", [["--folders", "0"], ["--changes", "100001"], ["--duration", "1"],
                                  ["--lifecycle-share", "1.5"], ["--lifecycle-share", "-0.1"],
                                  ["--lifecycle-share", "some"], ["--seed", "x"], ["--unknown"]])
def test_bad_options_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_options_reach_the_run():
    config = config_from_args(parse_args(["--short", "--folders", "50", "--lifecycle-share", "0"]))
    assert (config.folders, config.changes, config.lifecycle_share, config.worker_kills) == (50, 400, 0.0, 1)
    assert config_from_args(parse_args([])).lifecycle_share == 0.10


def test_billing_is_on_unless_asked_off():
    assert config_from_args(parse_args(["--short"])).billing is True
    assert config_from_args(parse_args(["--short", "--no-billing"])).billing is False
