"""The conda recipe and the example config stay true to setup.py and the settings."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from analysisstore.config import load_config

ROOT = Path(__file__).resolve().parent.parent
# PyPI name → conda-forge name where they differ.
CONDA_NAMES = {"fastjsonschema": "python-fastjsonschema", "prometheus-client": "prometheus_client",
               "pyyaml": "pyyaml"}


def _setup_requirements() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "INSTALL_REQUIRES":
            items = ast.literal_eval(node.value)
            return {re.split(r"[<>=!]", item)[0].lower(): item[len(re.split(r"[<>=!]", item)[0]):]
                    for item in items}
    raise AssertionError("INSTALL_REQUIRES not found in setup.py")


def _recipe() -> dict:
    text = (ROOT / "conda-recipe" / "meta.yaml").read_text()
    text = re.sub(r"\{%.*?%\}", "", text)  # jinja statements
    text = re.sub(r"\{\{.*?\}\}", "x", text)  # jinja expressions
    return yaml.safe_load(text)


def test_recipe_parses_and_tests_the_cli_and_client():
    """The recipe has the entry point and a test section importing the client and running --help."""
    recipe = _recipe()
    assert recipe["build"]["entry_points"] == ["analysisstore = analysisstore.cli:main"]
    assert "analysisstore.client" in recipe["test"]["imports"]
    assert "analysisstore --help" in recipe["test"]["commands"]


def test_recipe_run_requirements_mirror_setup_py():
    """Every install requirement of setup.py is a run requirement of the recipe, same lower bound."""
    run = {}
    for line in _recipe()["requirements"]["run"]:
        name, _, spec = line.partition(" ")
        run[name.lower()] = spec.replace(" ", "")
    setup = {CONDA_NAMES.get(name, name): spec for name, spec in _setup_requirements().items()}
    assert set(run) - {"python"} == set(setup)
    for name, spec in setup.items():
        assert run[name] == spec, name


def test_setup_console_script_matches_recipe():
    """setup.py and the recipe declare the same console script."""
    assert "analysisstore = analysisstore.cli:main" in (ROOT / "setup.py").read_text()


def test_example_config_is_valid(tmp_path):
    """contrib/config.example.yaml loads with every key known and every value valid."""
    config = load_config({}, ROOT / "contrib" / "config.example.yaml", {})
    assert config.processes == 2 and config.auth_enabled and config.log_format == "json"


def test_wheel_ships_every_package_and_data_file(tmp_path):
    """A regular (non-editable) build contains every subpackage, the schemas, the web assets and py.typed."""
    import subprocess
    import sys
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("analysisstore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected_packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "analysisstore").rglob("__init__.py")}
    for package in expected_packages:
        assert f"{package}/__init__.py" in names, package
    for name in ("analysisstore/client/commands.py", "analysisstore/client/bundle.py", "analysisstore/py.typed",
                 "analysisstore/schemas/data_reference.json", "analysisstore/web/index.html",
                 "analysisstore/web/app.js", "analysisstore/web/style.css"):
        assert name in names, name
