"""The import graph of ``agile_jax``, the envs and the experiments: no circles, and each layer imports only its own
layer and those below it.

Every ``import`` of every module under ``agile_jax/``, ``envs/`` and ``experiments/`` counts, wherever it stands
(module level, inside a function, under ``TYPE_CHECKING``). Importing ``a.b.c`` also runs ``a/b/__init__.py``: for
the circle check an import into another package counts as an import of that package's ``__init__`` too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("agile_jax", "envs", "experiments")

# Lowest first. A module's layer is that of the longest prefix listed here (the root ``agile_jax`` stands for its
# ``__init__`` alone, :data:`INIT_ONLY`, so a new subpackage must be placed here).
# The envs read only the base types. The extensions (the hook protocol that PPO's own terms implement, and the
# training methods) sit below the algorithms: a method file reads the config, the networks and the env spec, never
# PPO; :mod:`agile_jax.config` composes its schema, and :mod:`agile_jax.validation` its range rules, from the
# methods' records. The command-line tools and presets (``experiments``) sit on top.
LAYERS = (
    ("agile_jax", "agile_jax.types", "agile_jax.config_base", "agile_jax.runtime", "agile_jax.platform"),
    ("envs", "agile_jax.networks", "agile_jax.motion"),
    ("agile_jax.extensions",),
    ("agile_jax.config", "agile_jax.validation"),
    ("agile_jax.algorithms",),
    ("agile_jax.export", "agile_jax.io"),
    ("agile_jax.policies",),
    ("agile_jax.training",),
    ("agile_jax.evaluation",),
    ("experiments",),
)
# Entries that name only a package's own ``__init__``, not its submodules.
INIT_ONLY = ("agile_jax",)

# (importer, imported) edges allowed although they close a circle or point upwards, each with its reason.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_files() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of :data:`PACKAGES` (a package is its ``__init__.py``)."""
    modules = {}
    for path in (p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known(name: str, modules) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules) -> list[str]:
    """The package's modules one import statement names (``from p import m`` names ``p.m`` when it is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")[: len(module.split(".")) - node.level + int(is_package)]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    return [known for known in (_known(name, modules) for name in names) if known]


def direct_imports(modules) -> dict[str, set[str]]:
    """Module -> the package's modules its import statements name (itself left out)."""
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                         for target in _targets(node, module, path.name == "__init__.py", modules)} - {module}
    return graph


def with_packages(graph: dict[str, set[str]], modules) -> dict[str, set[str]]:
    """``graph`` plus, for an import into another package, that package's ``__init__`` (which the import runs)."""
    full = {}
    for module, targets in graph.items():
        own = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}
        parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
        full[module] = targets | {p for p in parents if p in modules and p not in own}
    return full


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the longest listed prefix of ``module``."""
    best, layer = "", None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix not in INIT_ONLY
            if (module == prefix or below) and len(prefix) > len(best):
                best, layer = prefix, i
    assert layer is not None, f"{module} is in no layer; add it to LAYERS"
    return layer


def _without_exceptions(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in KNOWN_EXCEPTIONS} for m, targets in graph.items()}


def test_no_import_circles():
    modules = module_files()
    found = circles(_without_exceptions(with_packages(direct_imports(modules), modules)))
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_layers_import_only_downwards():
    """Also through a package's ``__init__``, which an import into the package runs."""
    modules = module_files()
    graph = _without_exceptions(with_packages(direct_imports(modules), modules))
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_known_exceptions_still_exist():
    graph = direct_imports(module_files())
    stale = [edge for edge in KNOWN_EXCEPTIONS if edge[1] not in graph.get(edge[0], ())]
    assert not stale, f"exceptions whose import is gone (remove them): {stale}"


def test_the_checks_see_a_lazy_circle(tmp_path):
    """A circle closed by an import inside a function, and an upward import, are found."""
    (tmp_path / "agile_jax" / "networks").mkdir(parents=True)
    (tmp_path / "agile_jax" / "training").mkdir()
    (tmp_path / "agile_jax" / "networks" / "a.py").write_text("def f():\n    from agile_jax.training import b\n")
    (tmp_path / "agile_jax" / "training" / "b.py").write_text("from agile_jax.networks.a import f\n")
    modules = {"agile_jax.networks.a": tmp_path / "agile_jax" / "networks" / "a.py",
               "agile_jax.training.b": tmp_path / "agile_jax" / "training" / "b.py"}
    graph = direct_imports(modules)
    assert circles(graph) == [["agile_jax.networks.a", "agile_jax.training.b"]]
    assert layer_of("agile_jax.training.b") > layer_of("agile_jax.networks.a")


def test_a_new_subpackage_must_be_placed():
    """The root ``agile_jax`` names its ``__init__`` only: a subpackage missing from :data:`LAYERS` is refused."""
    assert layer_of("agile_jax") == 0 and layer_of("envs.robots.t1") == 1
    with pytest.raises(AssertionError, match="agile_jax.newpackage.module is in no layer"):
        layer_of("agile_jax.newpackage.module")
