"""Where a project's packages live when it is installed from the launch's directory (`pip install -e .`).

A `src/` layout puts `src/open_clip_train/` on sys.path through the editable install, so
`python -m open_clip_train.main` run from the project root imports it. The folder is read from the
project's own build files, as text (never run): pyproject.toml `[tool.setuptools] package-dir`
(`"" = "src"`) or `[tool.setuptools.packages.find] where`, setup.cfg `[options] package_dir = =src`,
setup.py's `setup(package_dir={"": "src"})` literal (stdlib ast), and, with any of those files
present but silent, a `src/` folder holding packages (setuptools' automatic discovery).
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pyproject.toml is not parsed; the src/ discovery still applies
    tomllib = None


def project_roots(cwd: Path) -> list[tuple[Path, str]]:
    """[(folder, why)] the project at `cwd` puts on sys.path when installed; [] when it is no project."""
    out: list[tuple[Path, str]] = []

    def add(rel: object, why: str) -> None:
        if isinstance(rel, str):
            path = (cwd / rel).resolve()
            if path.is_dir() and path not in [p for p, _ in out]:
                out.append((path, why))

    pyproject, setup_cfg, setup_py = cwd / "pyproject.toml", cwd / "setup.cfg", cwd / "setup.py"
    if pyproject.is_file() and tomllib is not None:
        try:
            tool = tomllib.loads(pyproject.read_text(encoding="utf-8", errors="replace")).get("tool", {})
        except tomllib.TOMLDecodeError:
            tool = {}
        st = tool.get("setuptools", {}) if isinstance(tool, dict) else {}
        if isinstance(st, dict):
            dirs = st.get("package-dir", {})
            if isinstance(dirs, dict):
                add(dirs.get(""), 'pyproject.toml [tool.setuptools] package-dir ""')
            find = st.get("packages", {})
            for where in (find.get("find", {}) or {}).get("where", []) if isinstance(find, dict) else []:
                add(where, "pyproject.toml [tool.setuptools.packages.find] where")
    if setup_cfg.is_file():
        cfg = configparser.ConfigParser()
        try:
            cfg.read_string(setup_cfg.read_text(encoding="utf-8", errors="replace"))
            text = cfg.get("options", "package_dir", fallback="")
        except configparser.Error:
            text = ""
        for line in text.splitlines():  # `=src` maps the root package to src/
            key, eq, value = line.partition("=")
            if eq and not key.strip():
                add(value.strip(), "setup.cfg [options] package_dir")
    if setup_py.is_file():
        add(_setup_py_package_dir(setup_py), 'setup.py setup(package_dir={"": ...})')
    if not out and any(p.is_file() for p in (pyproject, setup_cfg, setup_py)):
        src = cwd / "src"
        if src.is_dir() and any((d / "__init__.py").is_file() for d in src.iterdir() if d.is_dir()):
            add("src", "src/ layout (setuptools' automatic discovery)")
    return out


def _setup_py_package_dir(path: Path) -> str | None:
    """The root entry of `setup(package_dir={"": "src"})`, read as a literal (never run)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_dir":
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError, TypeError):
                return None
            return value.get("") if isinstance(value, dict) else None
    return None
