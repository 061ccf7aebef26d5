"""The operator commands ksg_epsilon and ksg_noise: one JSON line out, clear refusals in."""
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from privacy.dp.accountant import PRV_EPS_ERROR, epsilon_compute

ROOT = Path(__file__).resolve().parents[2]


def run(command: str, *args: str) -> dict:
    out = StringIO()
    call_command(command, *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120)


def test_ksg_epsilon_prints_the_accountants_epsilon_as_json():
    report = run("ksg_epsilon", "--sample-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "500",
                 "--delta", "1e-5")
    assert report == {
        "epsilon": epsilon_compute(sample_rate=0.01, noise_multiplier=1.1, steps=500, delta=1e-5, accountant="prv"),
        "accountant": "prv", "sample_rate": 0.01, "noise_multiplier": 1.1, "steps": 500, "delta": 1e-5,
        "eps_error": PRV_EPS_ERROR,
    }


def test_ksg_epsilon_with_rdp_has_no_eps_error():
    report = run("ksg_epsilon", "--sample-rate", "0.01", "--noise-multiplier", "1.1", "--steps", "500",
                 "--delta", "1e-5", "--accountant", "rdp")
    assert set(report) == {"epsilon", "accountant", "sample_rate", "noise_multiplier", "steps", "delta"}
    assert report["accountant"] == "rdp" and report["epsilon"] > 0


@pytest.mark.parametrize("accountant", ["prv", "rdp", "gdp"])
def test_ksg_noise_output_fed_back_into_ksg_epsilon_stays_within_the_target(accountant):
    setting = ["--sample-rate", "0.02", "--steps", "800", "--delta", "1e-6", "--accountant", accountant]
    noise = run("ksg_noise", *setting, "--epsilon", "2.5")
    assert {"noise_multiplier", "epsilon", "target_epsilon", "accountant", "tolerance", "sample_rate", "steps",
            "delta"} <= set(noise)
    assert noise["target_epsilon"] == 2.5 and noise["accountant"] == accountant
    assert ("eps_error" in noise) == (accountant == "prv")

    again = run("ksg_epsilon", *setting, "--noise-multiplier", repr(noise["noise_multiplier"]))
    assert again["epsilon"] == noise["epsilon"]
    assert 2.5 * (1 - noise["tolerance"]) <= again["epsilon"] <= 2.5


@pytest.mark.parametrize("flag, value, message", [
    ("--sample-rate", "-0.1", r"sample_rate must be in \(0, 1\]"),
    ("--sample-rate", "0", r"sample_rate must be in \(0, 1\]"),
    ("--sample-rate", "nan", "sample_rate must be a finite number"),
    ("--noise-multiplier", "inf", "noise_multiplier must be a finite number"),
    ("--noise-multiplier", "lots", "--noise-multiplier must be a number, not 'lots'"),
    ("--steps", "12.5", "--steps must be a whole number of steps, not '12.5'"),
    ("--steps", "0", "steps must be >= 1"),
    ("--delta", "1", r"delta must be a probability in \(0, 1\)"),
    ("--delta", "2e-1x", "--delta must be a number"),
    ("--accountant", "moments", "accountant must be one of prv, rdp, gdp"),
])
def test_ksg_epsilon_refuses_bad_input_with_what_to_fix(flag, value, message):
    args = {"--sample-rate": "0.01", "--noise-multiplier": "1.0", "--steps": "100", "--delta": "1e-5",
            "--accountant": "prv", flag: value}
    with pytest.raises(CommandError, match=message):
        call_command("ksg_epsilon", *[part for pair in args.items() for part in pair], stdout=StringIO())


@pytest.mark.parametrize("flag, value, message", [
    ("--epsilon", "0", "target_epsilon must be > 0"),
    ("--epsilon", "inf", "target_epsilon must be a finite number"),
    ("--epsilon", "-2", "target_epsilon must be > 0"),
    ("--tolerance", "1.5", r"tolerance must be in \(0, 1\)"),
    ("--delta", "1.0", r"delta must be a probability in \(0, 1\)"),
    ("--steps", "many", "--steps must be a whole number"),
])
def test_ksg_noise_refuses_bad_input_with_what_to_fix(flag, value, message):
    args = {"--sample-rate": "0.01", "--steps": "100", "--delta": "1e-5", "--epsilon": "1.0", "--accountant": "rdp",
            flag: value}
    with pytest.raises(CommandError, match=message):
        call_command("ksg_noise", *[part for pair in args.items() for part in pair], stdout=StringIO())


def test_bad_input_from_the_shell_exits_1_with_one_clear_line_and_no_traceback():
    result = manage("ksg_epsilon", "--sample-rate", "0.01", "--noise-multiplier", "-1", "--steps", "100",
                    "--delta", "1e-5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "CommandError: noise_multiplier must be > 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_target_from_the_shell_exits_1_saying_so():
    result = manage("ksg_noise", "--sample-rate", "1", "--steps", "1000", "--delta", "1e-5", "--epsilon", "0.0001",
                    "--accountant", "rdp")
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_ksg_noise_from_the_shell_prints_one_json_line():
    result = manage("ksg_noise", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5", "--epsilon", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accountant"] == "prv" and report["eps_error"] == PRV_EPS_ERROR
    assert 3 * 0.99 <= report["epsilon"] <= 3
