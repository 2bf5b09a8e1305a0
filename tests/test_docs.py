"""The README's two set-up commands stay true: CI runs exactly the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_gives_the_two_setup_commands():
    quick = ROOT.joinpath("README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    blocks = [b.strip() for b in _bash_blocks(quick)]
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)
    assert blocks[0].endswith("python app.py") and "pip install -e ." in blocks[0]
    assert "pytest" in blocks[1] and "'.[test]'" in blocks[1]


def test_ci_runs_the_readme_test_command():
    quick = ROOT.joinpath("README.md").read_text().split("## Quick start")[1]
    test_cmd = _bash_blocks(quick)[1].strip()
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "apt-get install" in ci and "chromium" in ci
