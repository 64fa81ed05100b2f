"""``luc demo --help`` asks for the key the demo needs: one key, of scope admin (it sends
events and reads jobs and agents back; ingest may not read, read may not send)."""

from __future__ import annotations

from click.testing import CliRunner

from service.cli import main


def test_the_demo_asks_for_an_admin_key() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "--key" in line]
    assert "scope admin" in line
    assert "ingest" not in line
