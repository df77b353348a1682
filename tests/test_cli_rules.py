"""`responsecentre rules check`: what a municipality's rule author runs before deploying."""

from __future__ import annotations

from pathlib import Path

import pytest

from responsecentre.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_pack_checks_and_says_what_each_rule_decides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(ROOT / "rules" / "default.yaml")]) == 0
    out = capsys.readouterr().out
    assert "rules OK" in out
    assert "clears door_open" in out
    assert "cancelled by alarm.cancel within 120 s" in out
    assert "auto-clearable alarm kinds:" in out and "low_battery" in out


def test_a_broken_pack_is_refused_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(
        "version: 1\nrules:\n  - name: x\n    when: alarm.buton\n    raise: {kind: a, priority: low, chain: c}\n"
    )
    assert main(["rules", "check", str(pack)]) == 1
    err = capsys.readouterr().err
    assert f"{pack}:4:" in err and "alarm.button" in err
