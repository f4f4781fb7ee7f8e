"""SCALING_CPU_BF16 (scaling/numerics.py): the switch that puts CPU jobs on either numerics path."""

from __future__ import annotations

import pytest

from scaling import numerics
from scaling.errors import LaunchError


@pytest.mark.parametrize("raw, mode", [("0", "fp32"), ("1", "bf16"), ("auto", "auto"), ("AUTO", "auto"), (" 0 ", "fp32")])
def test_modes(raw, mode):
    assert numerics.mode({numerics.ENV: raw}) == mode


def test_unset_means_the_hardware_decides():
    assert numerics.mode({}) == "auto"
    assert numerics.cpu_bf16_allowed({}) == numerics.cpu_has_bf16()


def test_forced_paths_hold_whatever_the_cpu():
    assert numerics.cpu_bf16_allowed({numerics.ENV: "0"}) is False
    assert numerics.cpu_bf16_allowed({numerics.ENV: "1"}) is True
    rec = numerics.describe({numerics.ENV: "0"})
    assert rec == {"cpu_bf16": numerics.cpu_has_bf16(), "cpu_bf16_mode": "fp32", "cpu_bf16_used": False}


@pytest.mark.parametrize("raw", ["yes", "2", "bf16", "false"])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_choices(raw):
    with pytest.raises(LaunchError) as err:
        numerics.mode({numerics.ENV: raw})
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"SCALING_CPU_BF16={raw!r}") and "0" in text and "auto" in text


def test_launch_refuses_a_bad_value_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from scaling.cli import main

    monkeypatch.setenv(numerics.ENV, "yes")
    rc = main(["launch", "recipes/tiny-ladder-quick.yaml", "--executor", "local", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "SCALING_CPU_BF16" in err, err
    assert not (tmp_path / "runs").exists()
