"""README opens with the two set-up commands, and CI runs exactly the README's test command."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_demo_then_tests() -> None:
    text = (REPO / "README.md").read_text("utf-8")
    first_block = text.index("```bash")
    assert text[:first_block].strip() == "# cementscan"
    demo, tests = _readme_commands()[:2]
    assert demo.startswith("python3 -m venv .venv") and demo.endswith("cementscan demo")
    assert "pytest" in tests and "[test]" in tests


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _readme_commands()[1]
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text("utf-8").splitlines()]
    assert test_command in ci_lines
