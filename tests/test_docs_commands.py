"""Every command the README, a docs page or the CLI prints works as printed.

Commands are extracted from the ```bash blocks of README.md and docs/*.md (and from the
backticked `tlstudy ...` / `mlflow ...` commands in the CLI's messages), not retyped here.
Each one is either run (the cheap ones) or parsed by the real click command it names, so an
unknown sub-command, option, choice or MLproject parameter fails the test.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from pipelines.cli import main as tlstudy_cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.DOTALL)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# Programs a doc may print that tlstudy does not own; everything else must be checked below.
EXTERNAL = {"cp", "docker", "source", "export", "pip"}
PLACEHOLDER = "PLACEHOLDER"


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def _split_chain(text: str) -> list[list[str]]:
    """``a && b | c`` -> [[a...], [b...], [c...]] (comments dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", "|", ";"):
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def doc_commands(paths: list[Path] = DOCS) -> list[DocCommand]:
    """Every shell command printed in a ```bash block of ``paths``."""
    out: list[DocCommand] = []
    for path in paths:
        text = path.read_text()
        for block in SHELL_BLOCK.finditer(text):
            first_line = text.count("\n", 0, block.start(1)) + 1
            joined, start = "", None
            for offset, line in enumerate(block.group(1).splitlines()):
                start = first_line + offset if start is None else start
                if line.rstrip().endswith("\\"):
                    joined += line.rstrip()[:-1] + " "
                    continue
                joined += line
                for argv in _split_chain(joined):
                    out.append(DocCommand(f"{path.relative_to(ROOT)}:{start}", joined.strip(), tuple(argv)))
                joined, start = "", None
    return out


def _message_strings(tree):
    """(line, text) of every string literal that is not a docstring; f-string fields become PLACEHOLDER."""
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def cli_printed_commands() -> list[DocCommand]:
    """Backticked `tlstudy ...` / `mlflow ...` commands in the messages of the code (not its docstrings)."""
    out = []
    for path in sorted([*ROOT.glob("pipelines/*.py"), *ROOT.glob("tracking/*.py"), *ROOT.glob("tlcore/**/*.py")]):
        for number, text in _message_strings(ast.parse(path.read_text())):
            for found in re.finditer(r"`((?:tlstudy|mlflow) [^`]*)`", text):
                if found.group(1) == "mlflow run":  # the tool named in prose, not a command to type
                    continue
                out.append(DocCommand(f"{path.relative_to(ROOT)}:{number}", found.group(1),
                                      tuple(shlex.split(found.group(1)))))
    return out


# ------------------------------------------------------------------------------ checking
def _program(argv: tuple[str, ...]) -> str:
    return argv[0].removeprefix(".venv/bin/")


def check_click(command: click.Command, args: list[str], where: str) -> None:
    """Parse ``args`` with ``command``'s real parser: unknown sub-commands, options and choices fail."""
    ctx = click.Context(command, info_name=command.name)
    if "--help" in args or "-h" in args:
        return
    parser = command.make_parser(ctx)
    try:
        values, rest, _ = parser.parse_args(list(args))
    except click.UsageError as exc:
        pytest.fail(f"{where}: {exc.format_message()}")
    for param in command.params:
        value = values.get(param.name)
        if value is None or not isinstance(param.type, click.Choice):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            for one in str(item).split(","):
                if PLACEHOLDER not in one and one not in param.type.choices:
                    pytest.fail(f"{where}: {one!r} is not a choice of {param.opts[0]} ({param.type.choices})")
    if isinstance(command, click.Group):
        assert rest, f"{where}: {command.name} needs a sub-command"
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"{where}: no sub-command {rest[0]!r} of {command.name!r}"
        check_click(sub, rest[1:], where)
    else:
        positional = [p for p in command.params if isinstance(p, click.Argument)]
        assert not rest or any(p.nargs == -1 for p in positional), f"{where}: extra arguments {rest}"


def check_mlflow_run(args: list[str], where: str) -> None:
    """``mlflow run . -e NAME -P k=v``: MLflow's own parser, then NAME and every k against MLproject."""
    from mlflow.cli import cli as mlflow_cli

    run = mlflow_cli.commands["run"]
    check_click(run, args, where)
    ctx = click.Context(run, resilient_parsing=True)
    values, _, _ = run.make_parser(ctx).parse_args(list(args))
    assert values.get("uri") == ".", f"{where}: `mlflow run` of {values.get('uri')!r}, not of this project (.)"
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    entry = values.get("entry_point") or "main"
    assert entry in project["entry_points"], f"{where}: MLproject has no entry point {entry!r}"
    declared = project["entry_points"][entry].get("parameters", {})
    for pair in values.get("param_list") or ():
        key, _, value = pair.partition("=")
        assert key in declared, f"{where}: entry point {entry!r} declares no parameter {key!r}"
        if str(declared[key].get("type", "string")) == "float":
            float(value)  # MLflow refuses a float parameter that is not a number


def check_python(args: list[str], where: str) -> None:
    if args[:2] == ["-m", "venv"] or args[:1] == ["-c"]:
        return
    if args[:2] == ["-m", "pytest"]:
        for arg in args[2:]:
            if not arg.startswith("-") and "/" in arg:
                assert (ROOT / arg.split("::")[0]).exists(), f"{where}: no test path {arg}"
        return
    if args[:1] == ["-m"]:
        import importlib.util

        assert importlib.util.find_spec(args[1]) is not None, f"{where}: no module {args[1]}"
        return
    script = ROOT / args[0]
    assert script.is_file(), f"{where}: no script {args[0]}"
    source = script.read_text()
    for arg in args[1:]:
        if arg.startswith("--"):
            assert f'"{arg.split("=")[0]}"' in source, f"{where}: {args[0]} has no option {arg}"


def check_command(cmd: DocCommand) -> None:
    program, args = _program(cmd.argv), list(cmd.argv[1:])
    if program == "tlstudy":
        check_click(tlstudy_cli, args, str(cmd))
    elif program == "mlflow" and args[:1] == ["run"]:
        check_mlflow_run(args[1:], str(cmd))
    elif program == "mlflow":
        from mlflow.cli import cli as mlflow_cli

        check_click(mlflow_cli, args, str(cmd))
    elif program in ("python", "python3"):
        check_python(args, str(cmd))
    elif program == "source":
        assert args == [".venv/bin/activate"], f"{cmd}: sources something other than the venv"
    elif program == "cp":
        assert (ROOT / args[0]).is_file(), f"{cmd}: no file {args[0]}"
    else:
        assert program in EXTERNAL, f"{cmd}: unknown program {program!r}; check it in tests/test_docs_commands.py"


# ------------------------------------------------------------------------------ tests
def test_the_docs_print_commands():
    commands = doc_commands()
    programs = {_program(c.argv) for c in commands}
    assert {"tlstudy", "mlflow", "python3"} <= programs
    texts = [c.text for c in commands]
    assert "mlflow run . -e finetune -P dataset=mias --env-manager local" in texts
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in texts


@pytest.mark.parametrize("cmd", doc_commands(), ids=str)
def test_doc_command_parses(cmd):
    check_command(cmd)


@pytest.mark.parametrize("cmd", cli_printed_commands(), ids=str)
def test_cli_printed_command_parses(cmd):
    check_command(cmd)


def test_cli_messages_print_commands():
    texts = {c.text for c in cli_printed_commands()}
    assert f"tlstudy pretrain --model {PLACEHOLDER}" in texts  # the registry's "nothing registered" line


def test_commands_built_by_functions_parse():
    from tlcore.models.weights import fetch_command
    from tracking.store import browse_hint

    check_command(DocCommand("fetch_command", fetch_command("resnet50"), tuple(shlex.split(fetch_command("vgg16")))))
    hint = re.search(r"`(.+?)`", browse_hint("sqlite:///mlflow.db", "1")).group(1)
    check_command(DocCommand("browse_hint", hint, tuple(shlex.split(hint))))


def test_python_blocks_compile():
    for path in DOCS:
        for block in PYTHON_BLOCK.finditer(path.read_text()):
            compile(block.group(1), str(path), "exec")


def test_a_wrong_option_or_subcommand_is_caught():
    for text in ("tlstudy weights fetch --modle resnet50", "tlstudy wieghts list",
                 "tlstudy study --profile fast", "mlflow run . -e finetune -P datset=mias --env-manager local",
                 "mlflow run . -e fine-tune --env-manager local", "mlflow ui --backend-uri sqlite:///mlflow.db",
                 "make demo"):
        with pytest.raises((pytest.fail.Exception, AssertionError)):
            check_command(DocCommand("example", text, tuple(shlex.split(text))))


def _run_block(path: Path, must_contain: str, cwd: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Run, in ``cwd``, the commands of the first bash block of ``path`` that prints ``must_contain``."""
    block = next(b.group(1) for b in SHELL_BLOCK.finditer(path.read_text()) if must_contain in b.group(1))
    bindir = Path(sys.executable).parent
    results = []
    for line in block.splitlines():
        for argv in _split_chain(line):
            argv[0] = str(bindir / _program(tuple(argv)))
            results.append(subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                                          check=False))
    return results


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_dataset_commands_run_as_printed(tmp_path):
    results = _run_block(ROOT / "docs" / "datasets.md", "tlstudy data check", tmp_path, _env())
    assert len(results) == 3
    for result in results:
        assert result.returncode == 0, result.args + [result.stderr[-2000:]]
    assert "mias" in results[1].stdout
    assert '"n_images"' in results[2].stdout


def test_weights_commands_run_as_printed(tmp_path):
    """`tlstudy weights list` runs; `fetch` is not run (no network in tests), only parsed above."""
    env = _env(TORCH_HOME=str(tmp_path / "torch"), TLSTUDY_WEIGHTS_DOWNLOAD="0")
    block_text = next(b.group(1) for b in SHELL_BLOCK.finditer((ROOT / "README.md").read_text())
                      if "tlstudy weights list" in b.group(1))
    assert "tlstudy weights list" in block_text.splitlines()
    listed = subprocess.run([str(Path(sys.executable).parent / "tlstudy"), "weights", "list"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "resnet50-0676ba61.pth" in listed.stdout and str(tmp_path / "torch") in listed.stdout


def _anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the headings of ``path``."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text().splitlines() if line.startswith("#")}


def test_links_between_the_pages_resolve():
    checked = 0
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", path.read_text()):
            file, anchor = target
            linked = (path.parent / file).resolve() if file else path
            assert linked.is_file(), f"{path.relative_to(ROOT)}: broken link {file}"
            if anchor:
                assert anchor in _anchors(linked), f"{path.relative_to(ROOT)}: no heading #{anchor} in {file}"
            checked += 1
    assert checked >= 12  # the README's table of pages at least
