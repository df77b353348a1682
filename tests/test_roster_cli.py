"""`responsecentre roster who`, through the module's own `main` with a staff file in a temp dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from responsecentre.roster_cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "escalation" / "staff.yaml"


@pytest.fixture
def staff_file(tmp_path: Path) -> Path:
    path = tmp_path / "staff.yaml"
    shutil.copy(EXAMPLE, path)
    return path


def who(path: Path, *args: str) -> list[str]:
    return ["roster", "who", "--file", str(path), *args]


def test_who_prints_the_people_in_roster_order_with_until_and_source(
    staff_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(who(staff_file, "--zone", "north", "--role", "nurse", "--at", "2027-12-25T06:00"))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "vestby, zone north, nurse, at 2027-12-25 06:00 CET (Europe/Oslo)"
    assert out[1].split() == [
        "s-n2",
        "Nurse",
        "North",
        "Night",
        "nurse",
        "until",
        "2027-12-25",
        "07:00",
        "CET",
        "override:",
        "holiday",
        "night",
        "15:00-07:00;",
        "Christmas",
        "Eve",
    ]
    assert out[-1] == "coverage: 1 on duty, minimum 1: OK"


def test_several_people_keep_the_shifts_order(staff_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(who(staff_file, "--zone", "south", "--role", "nurse", "--at", "2027-11-06T10:00")) == 0  # a Saturday
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["s-n3", "s-n7"]
    assert "pattern: weekend day 07:00-15:00" in lines[1]


def test_a_swap_and_always_on_duty_are_named(staff_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(who(staff_file, "--zone", "north", "--role", "nurse", "--at", "2027-11-10T08:00")) == 0
    assert "override: day 07:00-15:00; swap for s-n1" in capsys.readouterr().out
    assert main(who(staff_file, "--zone", "north", "--role", "operator", "--at", "2027-11-10T08:00")) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[0] == "s-op1" and line.split()[-2:] == ["always", "always"]


def test_times_with_an_offset_and_in_utc(staff_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2027-10-31T01:30Z is the second 02:30 of the fall-back night (CET).
    assert main(who(staff_file, "--zone", "north", "--role", "nurse", "--at", "2027-10-31T01:30Z")) == 0
    out = capsys.readouterr().out
    assert "at 2027-10-31 02:30 CET" in out and "s-n2" in out
    assert main(who(staff_file, "--zone", "north", "--role", "nurse", "--at", "2027-10-31T02:30+02:00")) == 0
    assert "at 2027-10-31 02:30 CEST" in capsys.readouterr().out


def test_a_repeated_local_time_takes_the_first_and_says_so(
    staff_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(who(staff_file, "--zone", "north", "--role", "nurse", "--at", "2027-10-31T02:30")) == 0
    captured = capsys.readouterr()
    assert "at 2027-10-31 02:30 CEST" in captured.out
    assert "happens twice in Europe/Oslo; using the first (+02:00)" in captured.err


def test_nobody_on_duty_exits_1_with_a_hint_for_an_unknown_zone(
    staff_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(who(staff_file, "--zone", "nort", "--role", "nurse", "--at", "2027-11-10T08:00"))
    captured = capsys.readouterr()
    assert code == 1
    assert "nobody on duty" in captured.out
    assert "coverage: 0 on duty, minimum 1: SHORT" in captured.out
    assert "zone 'nort' is not named" in captured.err and "north, south" in captured.err


def test_fewer_than_the_minimum_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text(
        "tenants:\n  t:\n    minimum: {nurse: 2}\n    staff:\n      - {id: a, role: nurse, zone: north}\n",
        encoding="utf-8",
    )
    assert main(who(path, "--zone", "north", "--role", "nurse", "--at", "2027-11-10T08:00")) == 1
    assert "coverage: 1 on duty, minimum 2: SHORT" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "north", "--role", "nurse", "--at", "2027-03-28T02:30"], "does not exist in Europe/Oslo"),
        (["--zone", "north", "--role", "nurse", "--at", "tomorrow"], "not an ISO 8601 time"),
        (["--zone", "north", "--role", "nurse", "--tenant", "oslo"], "no tenant 'oslo'"),
        (["--zone", "north", "--role", "doctor"], "invalid choice"),
        (["--role", "nurse"], "the following arguments are required: --zone"),
    ],
)
def test_bad_input_exits_2(staff_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(who(staff_file, *args)) == 2
    assert message in capsys.readouterr().err


def test_a_refused_file_exits_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text("tenants:\n  t:\n    timezone: Mars/Olympus\n", encoding="utf-8")
    assert main(who(path, "--zone", "north", "--role", "nurse")) == 2
    assert f"error: {path}:3: unknown time zone 'Mars/Olympus'" in capsys.readouterr().err
    assert main(who(tmp_path / "missing.yaml", "--zone", "north", "--role", "nurse")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_several_tenants_need_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text(
        "tenants:\n  a:\n    staff: [{id: x, role: nurse}]\n  b:\n    staff: [{id: y, role: nurse}]\n",
        encoding="utf-8",
    )
    assert main(who(path, "--zone", "north", "--role", "nurse")) == 2
    assert "choose one with --tenant (a, b)" in capsys.readouterr().err
    assert main(who(path, "--zone", "north", "--role", "nurse", "--tenant", "b")) == 0
    assert "y" in capsys.readouterr().out.splitlines()[1].split()


def test_the_shipped_staff_file_and_the_default_time(capsys: pytest.CaptureFixture[str]) -> None:
    """No --at: now. The shipped escalation/staff.yaml covers south's nurses at every hour,
    and its operator is always on."""
    assert main(who(ROOT / "escalation" / "staff.yaml", "--zone", "south", "--role", "nurse")) == 0
    assert "minimum 1: OK" in capsys.readouterr().out
    assert main(who(ROOT / "escalation" / "staff.yaml", "--zone", "south", "--role", "operator")) == 0
    out = capsys.readouterr().out
    assert "s-op1" in out and "always" in out
