"""The house rules, enforced: file sizes, no import cycles, layers that point one way.

Each rule is a function over a source tree, so the same checks run on the real tree and, to prove
they bite, on a small tree with a deliberate violation (``tmp_path``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = {"backend": 400, "sandbox": 600}
VENDOR_LIBRARIES = ("exchangelib", "msal", "simple_salesforce", "google", "googleapiclient")
# Where a vendor library may be imported: the connectors, and auth for the OAuth flows.
VENDOR_ALLOWED = ("backend.connectors", "backend.auth")
# The one module allowed to lean on another library's private names (with its own test).
PRIVATE_API_MODULE = "backend.net.urllib3_internals"
# Our own packages, whose underscored names are ours to use; the private-names rule covers both.
OWN_PACKAGES = ("backend", "sandbox")
# (importer prefix, forbidden import prefixes): the layers point one way.
LAYER_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backend.sync", ("backend.auth", "backend.api", "backend.jobs", "backend.admin", "backend.hooks",
                      "backend.web", "backend.cli", "backend.extensions")),
    # Administration's domain logic sits beside sync/: the HTTP edges and the jobs call it, never the reverse.
    ("backend.admin", ("backend.auth", "backend.api", "backend.jobs", "backend.hooks", "backend.web", "backend.cli",
                       "backend.extensions")),
    ("backend.connectors", ("backend.store", "backend.sync", "backend.jobs", "backend.api", "backend.auth",
                            "backend.admin", "backend.hooks", "backend.web", "backend.cli", "backend.extensions",
                            "backend.clients")),
    ("backend.store", ("backend.sync", "backend.jobs", "backend.api", "backend.auth", "backend.connectors",
                       "backend.extensions", "backend.clients")),
    ("backend.security", ("backend.store", "backend.sync", "backend.jobs", "backend.api", "backend.auth",
                          "backend.connectors", "backend.extensions", "backend.clients")),
    ("backend.net", ("backend.store", "backend.sync", "backend.jobs", "backend.api", "backend.auth",
                     "backend.connectors", "backend.security", "backend.extensions", "backend.clients")),
    # What an operator sees sits under everything that records into it (net/, sync/, jobs/, hooks/).
    ("backend.observability", ("backend.net", "backend.store", "backend.security", "backend.sync", "backend.jobs",
                               "backend.api", "backend.auth", "backend.connectors", "backend.admin", "backend.hooks",
                               "backend.web", "backend.cli", "backend.extensions", "backend.clients")),
    # Product code never leans on the fakes: they serve tests, scripts/dev and bench only.
    ("backend", ("sandbox", "bench", "scripts")),
    ("backend.config", ("backend",)),
    ("backend.errors", ("backend",)),
)


@dataclass(frozen=True)
class Import:
    """One import statement of a module."""

    module: str  # the importing module
    target: str  # the imported module (for ``from a import b``: ``a.b`` when that is a module, else ``a``)
    names: tuple[str, ...]
    top_level: bool  # executed at import time (not inside a function or an ``if TYPE_CHECKING``)
    line: int


def module_name(root: Path, path: Path) -> str:
    """``backend/sync/run.py`` -> ``backend.sync.run``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path, top: str) -> Iterator[Path]:
    """The Python files under ``root/top``."""
    yield from sorted(p for p in (root / top).rglob("*.py") if "__pycache__" not in p.parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import in a file, marked top-level or not."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(name, a.name, (), top, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = tuple(a.name for a in child.names)
                for imported in names:
                    sub = f"{base}.{imported}"
                    is_module = (root / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (root / Path(*sub.split(".")) / "__init__.py").exists()
                    found.append(Import(name, sub if is_module else base, (imported,), top, child.lineno))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, top)

    visit(tree, True)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def long_files(root: Path) -> list[str]:
    """Files over their tree's line limit."""
    return [f"{p.relative_to(root)} ({n} lines)"
            for top, limit in MAX_LINES.items() if (root / top).is_dir()
            for p in python_files(root, top)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit]


def import_cycles(root: Path) -> list[list[str]]:
    """Cycles among the modules of ``backend`` through imports run at import time (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for path in python_files(root, "backend"):
        graph[module_name(root, path)] = set()
        for imp in imports_of(root, path):
            if imp.top_level and _within(imp.target, "backend") and imp.target != imp.module:
                graph[imp.module].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in graph:
                continue
            if succ not in index:
                strongconnect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return cycles


def layer_violations(root: Path) -> list[str]:
    """Imports (at any depth of a module) that point up the layers or reach a vendor library out of place."""
    problems: list[str] = []
    for path in python_files(root, "backend"):
        for imp in imports_of(root, path):
            for importer, forbidden in LAYER_RULES:
                if _within(imp.module, importer) and any(_within(imp.target, f) for f in forbidden) \
                        and not _within(imp.target, importer):
                    problems.append(f"{imp.module}:{imp.line} imports {imp.target}")
            vendor = imp.target.split(".")[0]
            if vendor in VENDOR_LIBRARIES and not any(_within(imp.module, a) for a in VENDOR_ALLOWED):
                problems.append(f"{imp.module}:{imp.line} imports the vendor library {imp.target}")
    for top in ("backend", "sandbox", "scripts", "bench"):
        if not (root / top).is_dir():
            continue
        for path in python_files(root, top):
            for imp in imports_of(root, path):
                if _within(imp.target, "tests"):
                    problems.append(f"{module_name(root, path)}:{imp.line} imports {imp.target} (only tests/ may)")
    return problems


def private_imports(root: Path) -> list[str]:
    """Uses of another library's private names (``_x``) outside :data:`PRIVATE_API_MODULE`."""
    problems: list[str] = []
    for path in (p for top in OWN_PACKAGES if (root / top).is_dir() for p in python_files(root, top)):
        name = module_name(root, path)
        if name == PRIVATE_API_MODULE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules: set[str] = set()  # local names bound to another library's modules
        for imp in imports_of(root, path):
            if any(_within(imp.target, own) for own in OWN_PACKAGES) or imp.target.startswith("__future__"):
                continue
            private_path = any(part.startswith("_") and not part.startswith("__") for part in imp.target.split("."))
            private_name = any(n.startswith("_") and not n.startswith("__") for n in imp.names)
            if private_path or private_name:
                problems.append(f"{name}:{imp.line} imports {imp.target} {' '.join(imp.names)}".rstrip())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names
                               if not a.name.startswith(OWN_PACKAGES))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in modules:
                    problems.append(f"{name}:{node.lineno} uses {base.id}...{node.attr}")
    return problems


# --- the real tree -----------------------------------------------------------------------------


def test_no_file_is_too_long_to_hold_in_one_head() -> None:
    assert long_files(ROOT) == []


def test_no_import_cycle_at_module_level() -> None:
    assert import_cycles(ROOT) == []


def test_layers_point_one_way() -> None:
    assert layer_violations(ROOT) == []


def test_private_names_of_other_libraries_stay_in_one_module() -> None:
    assert private_imports(ROOT) == []


# --- the rules bite ----------------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"backend/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent.parts and parent.parts[0] in ("backend", "sandbox") and not init.exists():
                init.write_text("")
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    ({"backend/sync/run.py": "from backend.jobs import sync\n", "backend/jobs/sync.py": ""},
     "backend.sync.run:1 imports backend.jobs.sync"),
    ({"backend/sync/run.py": "def f():\n    from backend.auth.salesforce import x\n",
      "backend/auth/salesforce.py": ""}, "backend.sync.run:2 imports backend.auth.salesforce"),
    ({"backend/sync/run.py": "import backend.api.sync\n", "backend/api/sync.py": ""},
     "backend.sync.run:1 imports backend.api.sync"),
    ({"backend/connectors/graph.py": "from backend.store import Store\n", "backend/store/__init__.py": ""},
     "backend.connectors.graph:1 imports backend.store"),
    ({"backend/connectors/graph.py": "from backend.sync.run import x\n", "backend/sync/run.py": ""},
     "backend.connectors.graph:1 imports backend.sync.run"),
    ({"backend/sync/run.py": "import msal\n"}, "backend.sync.run:1 imports the vendor library msal"),
    ({"backend/store/x.py": "from exchangelib import Account\n"},
     "backend.store.x:1 imports the vendor library exchangelib"),
    ({"backend/api/x.py": "from google.oauth2 import credentials\n"},
     "backend.api.x:1 imports the vendor library google.oauth2"),
    ({"backend/config.py": "from backend.security import crypto\n", "backend/security/crypto.py": ""},
     "backend.config:1 imports backend.security.crypto"),
    ({"sandbox/ews.py": "from tests.helpers import login\n"}, "sandbox.ews:1 imports tests.helpers"),
    ({"backend/x.py": "import tests.conftest\n"}, "backend.x:1 imports tests.conftest"),
    ({"backend/web.py": "from sandbox.ews import serve\n", "sandbox/ews.py": ""}, "backend.web:1 imports sandbox.ews"),
    ({"backend/observability/metrics.py": "from backend.store import Store\n", "backend/store/__init__.py": ""},
     "backend.observability.metrics:1 imports backend.store"),
])
def test_a_layer_violation_is_reported(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = layer_violations(_tree(tmp_path, files))
    assert any(p.startswith(expected) for p in problems), problems


def test_vendor_libraries_are_allowed_in_connectors_and_auth(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"backend/connectors/graph.py": "import msal\n",
                            "backend/auth/google.py": "from google.oauth2 import credentials\n"})
    assert layer_violations(root) == []


def test_an_import_cycle_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"backend/a.py": "from backend import b\n", "backend/b.py": "import backend.a\n",
                            "backend/c.py": "def f():\n    import backend.a\n"})
    assert import_cycles(root) == [["backend.a", "backend.b"]]


def test_an_import_inside_a_function_is_no_cycle(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"backend/a.py": "from backend import b\n",
                            "backend/b.py": "def f():\n    import backend.a\n"})
    assert import_cycles(root) == []


@pytest.mark.parametrize("where", ["backend/connectors/x.py", "sandbox/ews/x.py"])
@pytest.mark.parametrize(("source", "expected"), [
    ("from urllib3.util.connection import _set_socket_options\n", "urllib3.util.connection _set_socket_options"),
    ("from spnego._ntlm_raw.crypto import ntowfv2\n", "spnego._ntlm_raw.crypto ntowfv2"),
    ("import exchangelib.util\nx = exchangelib.util._get_retry_after\n", "uses exchangelib..._get_retry_after"),
])
def test_a_private_import_is_reported(tmp_path: Path, where: str, source: str, expected: str) -> None:
    problems = private_imports(_tree(tmp_path, {where: source}))
    assert any(expected in p for p in problems), problems


def test_our_own_underscored_names_are_no_private_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"sandbox/ews/x.py": "from sandbox.ews.state import _new_id\n",
                            "sandbox/ews/state.py": "", "backend/y.py": "from backend._z import _w\n"})
    assert private_imports(root) == []


def test_the_private_api_module_may_use_private_names(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"backend/net/urllib3_internals.py": "from urllib3.util.timeout import _DEFAULT_TIMEOUT\n"})
    assert private_imports(root) == []


def test_a_long_file_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"backend/big.py": "x = 1\n" * 401, "sandbox/ok.py": "x = 1\n" * 600,
                            "sandbox/big.py": "x = 1\n" * 601})
    assert long_files(root) == ["backend/big.py (401 lines)", "sandbox/big.py (601 lines)"]
