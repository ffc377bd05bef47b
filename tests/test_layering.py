"""ecco_core is built in floors: a module imports from its own floor or below, never above, and nothing in a circle.

Every import counts, at module level or inside a function: a function-level
import hides a circle from Python's import machinery, not from the design.
Importing ``ecco_core.a.b`` from outside ``a`` also runs the package
``ecco_core.a`` (an edge to it); the facade ``ecco_core/__init__.py`` sits on
the top floor, and the edge to it is left out (every submodule's import runs
it first).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecco_core"  # read, not imported

# Bottom to top. A module may import its own floor and the floors below it.
FLOORS = [
    # plain values, labels and the argument checks; readers of files that need no model
    {"_checks", "_blas", "_heartbeat", "_registry", "layers", "text", "capture_file", "probing._progress",
     "probing.data", "probing.presets"},
    # measures of two matrices: numbers in, a float out
    {"similarity.metrics"},
    # figures: data in, figure out, one module per view; they read result objects by their fields and import
    # nothing above. Below the analyses, not above: a result's to_html() renders its view with them.
    {"plots", "plots.common", "plots.views", "plots.tokens", "plots.predictions", "plots.lens", "plots.probing",
     "plots.factors", "plots.similarity", "plots.saliency", "plots.attention", "plots.patching",
     "plots.circuits", "plots.trust"},
    # how a model is run: the backend choice, NDIF's key and requests (nothing of the model itself)
    {"backends"},
    # models: the family table and loading
    {"models"},
    # how a model is hooked, traced (each view as one nnsight session, its steps in backends.served, probes, nmf) and
    # tokenised, what is read from its output; the activation store
    {"hooks", "backends.served", "backends.probes", "backends.nmf", "backends.sessions", "tokens", "readouts", "store"},
    # one forward pass into a Capture
    {"capture"},
    # passes that analyses share: the batched corpus pass, one backward pass
    {"corpus", "backward"},
    # analyses (circuits reads attention and patching; probing's table trains on what it collected)
    {"saliency", "lens", "factors", "similarity", "similarity.matrix", "similarity.layers", "attention", "patching",
     "circuits", "probing.collection", "probing.training", "probing.traced", "probing.tables", "probing", "similarity.traced"},
    # how far to trust an analysis: figures computed beside its result
    {"trust"},
    # cost before a run, from an analysis' own arguments
    {"estimates"},
    # the facade: ``import ecco_core as ec``
    {""},
]


def _module_name(path: Path) -> str:
    """``"probing.data"`` for ecco_core/probing/data.py, ``"probing"`` for its __init__, ``""`` for the facade."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str, modules) -> str | None:
    """The ecco_core module that ``name`` (dotted, relative to ecco_core) lands in, or None outside ecco_core."""
    while name not in modules:
        if "." not in name:
            return None
        name = name.rpartition(".")[0]
    return name


def imports(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """For each module, the ecco_core modules it imports, each with the first line that does."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name.removeprefix("ecco_core").lstrip(".") for alias in node.names
                           if alias.name == "ecco_core" or alias.name.startswith("ecco_core.")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                    base = ".".join(base)
                elif node.module == "ecco_core" or (node.module or "").startswith("ecco_core."):
                    base = node.module.removeprefix("ecco_core").lstrip(".")
                else:
                    continue
                # ``from . import probing`` names a module; ``from .capture import Capture`` a name in one
                targets = [f"{base}.{alias.name}".lstrip(".") if f"{base}.{alias.name}".lstrip(".") in modules
                           else base for alias in node.names]
            for target in targets:
                known = _known(target, modules)
                # importing a.b runs the package a first, unless the importer is inside a already
                while known is not None and known != name and not name.startswith(known + "."):
                    edges.setdefault(known, node.lineno)
                    known = known.rpartition(".")[0] if "." in known else None
        graph[name] = edges
    return graph


def _floor_of() -> dict[str, int]:
    return {name: level for level, floor in enumerate(FLOORS) for name in floor}


def test_every_module_has_a_floor():
    floor_of = _floor_of()
    assert len(floor_of) == sum(len(floor) for floor in FLOORS), "a module is on two floors"
    missing = sorted(name for name in _modules() if name not in floor_of)
    assert not missing, f"put each of these ecco_core modules on a floor in FLOORS: {missing}"


def test_no_import_runs_up_a_floor():
    modules = _modules()
    floor_of = _floor_of()
    upward = [
        f"ecco_core/{modules[name].relative_to(PACKAGE)}:{line} imports {target or 'ecco_core'} "
        f"(floor {floor_of[target]} above its own {floor_of[name]})"
        for name, edges in imports(modules).items() for target, line in edges.items()
        if name in floor_of and target in floor_of and floor_of[target] > floor_of[name]
    ]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search)."""
    state = {}
    path = []

    def visit(name):
        state[name] = "open"
        path.append(name)
        for target in graph.get(name, {}):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_no_import_circle():
    cycle = find_cycle(imports(_modules()))
    assert cycle is None, "import circle: " + " -> ".join(name or "ecco_core" for name in cycle)


def test_the_walk_sees_function_level_imports_and_finds_a_circle():
    """The checks above can fail: today's imports include function-level ones, and a circle is found."""
    graph = imports(_modules())
    assert "capture" in graph["saliency"] and "models" in graph["capture"]
    assert "models" in graph["store"]  # store_root imports cache_dir inside the function
    assert "probing" in graph["similarity"]  # importing probing.data runs the probing package
    assert find_cycle({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None



def private_imports(path: Path, source: str) -> list[str]:
    """``from <an ecco_core module> import _name`` in ``source`` (the text of ``path``): a module's private name
    used outside it. A private module (``_checks``) is the package's own and may be imported whole."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        folder = path.parents[node.level - 1].joinpath(*(node.module or "").split(".") if node.module else [])
        found += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name} from {'.' * node.level}"
                  f"{node.module or ''}" for alias in node.names
                  if alias.name.startswith("_") and not alias.name.startswith("__")
                  and not (folder / f"{alias.name}.py").exists() and not (folder / alias.name).is_dir()]
    return found


def test_no_module_imports_another_modules_private_name():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in private_imports(path, path.read_text())]
    assert not found, "\n".join(found)
    assert private_imports(PACKAGE / "trust.py", "from .lens import _head_device, Rankings\nfrom . import _checks\n"
                           ) == ["trust.py:1 imports _head_device from .lens"]
