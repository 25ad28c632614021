"""The README's two commands are what a new user runs and what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    assert text[:first_block].strip().startswith("# tlstudy")
    assert len(text[:first_block].strip().splitlines()) == 1, "nothing but the title before the commands"
    main_cmd, test_cmd = readme_commands()
    assert "pip install" in main_cmd and "tlstudy" in main_cmd
    assert "pytest" in test_cmd


def test_ci_runs_the_readme_test_command():
    _, test_cmd = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.strip() in ci.splitlines()
