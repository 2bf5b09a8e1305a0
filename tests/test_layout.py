"""The code's shape: short functions and modules, a core without Gradio that never reaches into the UI."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "logoapp"
CORE = sorted(p for p in PACKAGE.rglob("*.py") if "ui" not in p.relative_to(PACKAGE).parts)
MAX_FUNCTION, MAX_MODULE = 80, 400


def test_functions_and_modules_are_short():
    long = []
    for p in sorted(PACKAGE.rglob("*.py")):
        src = p.read_text()
        if len(src.splitlines()) > MAX_MODULE:
            long.append(f"{p.relative_to(ROOT)}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}(): {n} lines")
    assert not long, long


def imports(path: Path) -> list[tuple[str, str]]:
    """(enclosing function or '', absolute module name) for every import in a core module."""
    tree, out = ast.parse(path.read_text()), []
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Import):
                out.extend((f, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(pkg.split(".")[:len(pkg.split(".")) - child.level + 1] + ([base] if base else []))
                out.extend((f, f"{base}.{a.name}" if not child.module else base) for a in child.names)
            visit(child, f)
    visit(tree, "")
    return out


def test_the_core_imports_no_gradio_and_nothing_from_the_ui():
    found = [(p.name, f, m) for p in CORE for f, m in imports(p)
             if m.split(".")[0] == "gradio" or m.startswith("logoapp.ui")]
    # the one door: `logoapp` with no command (or `logoapp app`) starts the web app
    assert found == [("__init__.py", "web_app", "logoapp.ui")], found


def test_importing_the_core_loads_neither_gradio_nor_the_ui():
    mods = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in CORE if p.name != "__main__.py"]
    code = (f"import sys\nfor m in {mods!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio' or m.startswith('logoapp.ui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
