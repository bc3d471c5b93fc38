"""The contract between client and service: shared by both, importing neither, and checked alike on both sides."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import analysisstore
from analysisstore.client.bundle import BundleError, BundleWriter, read_bundle
from helpers import header_doc, post, record_doc, stream_doc, tail_doc

PACKAGE = Path(analysisstore.__file__).resolve().parent
#: Client-side code that lives in the server's directory: the drivers (they talk to the service through the
#: client), the analyses they run, the demo, and the command line (which runs both the service and client commands).
CLIENT_SIDE = ("drivers", "analyses", "demo.py", "cli.py", "cli_errors.py")
SERVER_ONLY = ("tornado", "pymongo", "bson", "motor")


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports (relative imports resolved), at any depth of its code."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _server_modules() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in CLIENT_SIDE:
            continue
        name = _module_name(path, PACKAGE, "analysisstore")
        modules[name] = _imports(path, name)
    return modules


def _is_client(module: str) -> bool:
    return module == "analysisstore.client" or module.startswith("analysisstore.client.")


def test_the_service_imports_nothing_of_the_client():
    """No server module (app, handlers, store, queries, validation, ingest...) imports analysisstore.client."""
    modules = _server_modules()
    assert "analysisstore.handlers.analyses" in modules and "analysisstore.store._reads" in modules
    offenders = {name: sorted(m for m in imports if _is_client(m)) for name, imports in modules.items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_contract_imports_neither_side():
    """The contract package imports no server code (tornado, pymongo, bson, the store...) and no client code."""
    contract = {name: imports for name, imports in _server_modules().items()
                if name.startswith("analysisstore.contract")}
    assert "analysisstore.contract.bundle.reader" in contract
    allowed_own = ("analysisstore.contract", "analysisstore.schemas")
    for name, imports in contract.items():
        for module in imports:
            assert module.split(".")[0] not in (*SERVER_ONLY, "requests"), (name, module)
            if module.startswith("analysisstore."):
                assert module.startswith(allowed_own) or module == "analysisstore.__version__", (name, module)


def test_importing_the_contract_loads_no_server_or_client_dependency():
    """In a fresh interpreter, the whole contract loads without tornado, pymongo, bson or requests."""
    code = ("import sys, analysisstore.contract.bundle, analysisstore.contract.validation, "
            "analysisstore.contract.vocabulary, analysisstore.contract.codec; "
            "bad = [m for m in ('tornado', 'pymongo', 'bson', 'requests', 'analysisstore.client', "
            "'analysisstore.store') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_both_sides_import_is_a_private_client_module():
    """What the service and the client share is public: nothing outside client/ imports a client/_x module."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path, PACKAGE, "analysisstore")
        private = [m for m in _imports(path, name) if _is_client(m) and any(
            part.startswith("_") and not part.startswith("__") for part in m.split(".")[2:])]
        assert private == [], (name, private)


def _bundle_with_record(path: Path, value: object) -> tuple[dict, dict, dict]:
    header = header_doc()
    stream = stream_doc(header["uid"])  # wavelength: number, label: string
    record = record_doc(stream["uid"], 0, data={"wavelength": value, "absorbance": 0.5})
    writer = BundleWriter(path)
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], [record])
    writer.write_tail(tail_doc(header["uid"]))
    writer.finish()
    return header, stream, record


def test_a_record_of_the_wrong_dtype_fails_local_validation(tmp_path):
    """A record whose value is not of its stream's declared dtype fails the bundle's own check, naming it."""
    _, stream, _ = _bundle_with_record(tmp_path / "b", "four hundred")
    [bundle] = read_bundle(tmp_path / "b")
    with bundle, pytest.raises(BundleError) as failure:
        bundle.validate()
    assert failure.value.member == f"data_reference/{stream['uid']}.jsonl"
    assert "line 1" in str(failure.value) and "dtype 'number'" in str(failure.value)


def test_local_validation_and_the_service_agree_on_a_record(service, tmp_path):
    """What the bundle check refuses the service refuses (422), and what it accepts the service stores."""
    for value, accepted in (("four hundred", False), (400, True), (None, True), (True, False)):
        header, stream, record = _bundle_with_record(tmp_path / f"b-{value}", value)
        [bundle] = read_bundle(tmp_path / f"b-{value}")
        with bundle:
            try:
                bundle.validate()
                locally = True
            except BundleError:
                locally = False
        assert post(service, "analysis_header", header).status_code == 201
        assert post(service, "data_reference_header", stream).status_code == 201
        answer = post(service, "data_reference", record)
        assert (locally, answer.status_code in (200, 201)) == (accepted, accepted), (value, answer.text)
        if not accepted:
            assert answer.status_code == 422


def test_search_keys_and_repeated_parameters_follow_the_shared_vocabulary(service):
    """Every reserved parameter is a search key and may be given once on a GET; others are refused."""
    from analysisstore.contract.vocabulary import SINGLE_VALUED_PARAMS

    for name in sorted(SINGLE_VALUED_PARAMS):
        repeated = requests.get(f"{service.url}/api/v1/analysis_header", params=[(name, "1"), (name, "2")],
                                timeout=30)
        assert repeated.status_code == 400 and "given 2 times" in repeated.json()["error"]["message"], name
    unknown = requests.post(f"{service.url}/api/v1/analysis_header/search", json={"bogus": 1}, timeout=30)
    assert unknown.status_code == 400
    assert "allowed: " in unknown.json()["error"]["message"]
    listed = unknown.json()["error"]["message"].split("allowed: ")[1]
    assert all(repr(name) in listed for name in SINGLE_VALUED_PARAMS | {"filter"})


ROOT = PACKAGE.parent


def _named_paths(text: str) -> set[str]:
    return {token for token in re.findall(r"`([^`\s]+)`", text)
            if ("/" in token or token.endswith((".py", ".md", ".yaml"))) and "<" not in token and "{" not in token
            and not token.startswith(("GET", "/api"))}


def _exists(token: str) -> bool:
    path, _, test = token.partition("::")
    for base in (ROOT, PACKAGE, PACKAGE / "store", PACKAGE / "handlers", PACKAGE / "contract" / "bundle"):
        if (base / path).exists():
            return not test or f"def {test}(" in (base / path).read_text(encoding="utf-8")
    return False


def test_the_layout_docs_name_only_what_exists():
    """Every file or directory README's Layout and docs/architecture.md name is there."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = _named_paths(layout) | _named_paths(architecture)
    assert "contract/bundle/manifest.py" in named
    assert sorted(token for token in named if not _exists(token)) == []


def test_the_architecture_page_names_every_store_and_contract_module():
    """docs/architecture.md names each module of the store and of the contract (so a new one is described)."""
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    store = {p.stem for p in (PACKAGE / "store").glob("_*.py")} - {"__init__"}
    contract = {p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "contract").rglob("*.py")
                if p.name != "__init__.py"}
    assert sorted(name for name in store if f"`{name}`" not in architecture) == []
    assert sorted(path for path in contract
                  if f"`{path}`" not in architecture and f"`{path.rsplit('/', 1)[-1]}`" not in architecture) == []
