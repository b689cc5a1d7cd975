"""The README a newcomer reads: its layout table names every module, and its code samples work
as written (Python samples import what they import; `retrain` and `make` lines name commands,
flags and targets that exist)."""

import ast
import re
import shlex
from pathlib import Path

import pytest

from app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
PYTHON_SAMPLES = re.findall(r"```python\n(.*?)```", README, re.S) + \
    re.findall(r"<<'PY'[^\n]*\n(.*?)\nPY\n", README, re.S)


def _layout_table() -> str:
    return README.split("### Layout", 1)[1].split("\n### ", 1)[0]


@pytest.mark.parametrize("module", sorted(
    str(path.relative_to(ROOT)) for package in ("components", "pipelines", "app")
    for path in (ROOT / package).rglob("*.py") if path.name != "__init__.py"))
def test_the_layout_table_names_every_module(module):
    """Check that each module is named in the layout table (by its file name, in a row naming
    its folder)."""
    folder, name = module.rsplit("/", 1)
    rows = [line for line in _layout_table().splitlines()
            if f"`{name}`" in line or f"/{name}`" in line or f"`{module}`" in line]
    assert any(folder.split("/")[-1] in row for row in rows), module


@pytest.mark.parametrize("sample", PYTHON_SAMPLES, ids=lambda s: s.splitlines()[0][:40])
def test_every_python_sample_imports_what_exists(sample):
    """Check that a Python sample parses and that every import in it succeeds."""
    tree = ast.parse(sample)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert imports, "a sample with nothing to import checks nothing here"
    exec(compile(ast.Module(imports, type_ignores=[]), "<README>", "exec"), {})  # noqa: S102


def _retrain_lines() -> list[str]:
    lines = []
    for block in BASH_BLOCKS:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            for part in line.split(";"):
                part = part.split(" #")[0].strip()
                part = re.sub(r"^\.venv/bin/", "", part)
                if part.startswith("retrain "):
                    lines.append(part)
    return lines


def _subparser(parser, name):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices[name]


@pytest.mark.parametrize("line", _retrain_lines(), ids=lambda line: line[:50])
def test_every_retrain_line_names_a_command_and_flags_that_exist(line):
    """Check each `retrain` line of the README: its command (and registry subcommand) exists,
    and so does every flag it shows, optional ones included."""
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " | ").split(">")[0])
    parser = _subparser(build_parser(), words[1])
    if words[1] == "registry":
        parser = _subparser(parser, words[2].split("|")[0])
    known = {option for action in parser._actions for option in action.option_strings}
    flags = [word for word in words if word.startswith("--")]
    assert flags, line
    for flag in flags:
        assert flag in known, f"{flag} in {line!r}"


@pytest.mark.parametrize("target", sorted({
    match for block in BASH_BLOCKS for match in re.findall(r"^make\s+([\w-]+)", block, re.M)}))
def test_every_make_line_names_a_target_that_exists(target):
    """Check that each `make TARGET` of the README is a target of the Makefile."""
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), target
