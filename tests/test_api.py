"""The public API's one access style, result conventions, and a library that never needs Streamlit."""

import ast
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ecco_core as ec

TESTS = Path(__file__).resolve().parent
# Tests of the app (pages, dashboard, browser); every other test file is a library test.
APP_TESTS = {"test_app.py", "test_browser.py", "test_hostile_app.py", "test_run_gate.py", "test_sessions.py"} | {
    path.name for pattern in ("test_page_*.py", "test_*_page.py") for path in TESTS.glob(pattern)
}


@pytest.mark.parametrize("name", ["attention", "capture", "factors", "saliency"])
def test_every_module_is_ec_dot_its_name_and_a_view_is_called_directly(name):
    module = importlib.import_module(f"ecco_core.{name}")
    assert getattr(ec, name) is module and callable(module)
    assert module.__call__.__func__ is type(ec.factors).__call__


def test_registries_and_types_are_reached_through_their_modules(lm):
    assert ec.factors.METHODS is importlib.import_module("ecco_core.factors").METHODS
    assert ec.saliency.METHODS is ec.SALIENCY_METHODS and ec.similarity.METHODS["cka"].description
    assert ec.capture.Capture is ec.Capture and ec.plots.heatmap and ec.layers.residual_label(0) == "embeddings"
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    np.testing.assert_array_equal(
        ec.factors(cap, "pca", n_components=2, layers=0).token_activations,
        ec.factors.factors(cap, "pca", n_components=2, layers=0).token_activations,
    )


def test_results_compare_by_identity_and_never_raise(lm):
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=1)
    sal = ec.saliency(lm, cap)
    data = ec.probing.collect(lm, ec.read_conllu(ec.probing.UD_ENGLISH_EWT_DEV)[:1], progress=lambda f, m: None)
    scores = ec.train_probes([data.hidden_states], data.tags, data.words, trials=1, epochs=1,
                             progress=lambda f, m: None)
    for result in (cap, sal, data, scores, ec.rankings(lm, cap), ec.factors(cap, "pca", n_components=2, layers=0)):
        assert result == result and result != dataclasses.replace(result)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.__setattr__(dataclasses.fields(result)[0].name, None)


def test_options_are_keyword_only():
    import inspect

    for function, positional in [
        (ec.capture.capture, ["lm", "text"]), (ec.saliency.saliency, ["lm", "cap", "method"]),
        (ec.rankings, ["lm", "cap"]), (ec.watch, ["lm", "text", "candidates"]),
        (ec.factors.factors, ["cap", "method"]), (ec.neurons, ["cap", "layer"]),
        (ec.similarity.cka, ["X", "Y"]), (ec.similarity.similarity_matrix, ["A_list", "B_list", "method"]),
        (ec.similarity.layer_similarity, ["captures", "method"]), (ec.probe_table, ["lm", "corpus"]),
        (ec.attention.attention, ["lm", "cap", "method"]),
    ]:
        parameters = inspect.signature(function).parameters.values()
        assert [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD] == positional, function.__name__


def test_the_library_and_its_tests_never_import_streamlit_or_the_dashboard():
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, ecco_core; print(sorted(m for m in sys.modules if m.startswith("
         "('streamlit', 'dashboard'))))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert imports == "[]"
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name in APP_TESTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"streamlit", "dashboard", "apptest"}, path.name


def _imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, at any level of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                        if isinstance(node, ast.ImportFrom) and node.module and not node.level}


def test_tests_share_support_modules_never_each_other_and_benchmarks_never_import_the_tests():
    """Shared fixtures live in conftest.py, shared helpers in the support modules (apptest, browser, families;
    app_driver at the root, shared with bench/), so no test file is imported by another or by a benchmark."""
    test_files = {path.stem for path in TESTS.glob("test_*.py")}
    found = [f"tests/{path.name} imports {name}" for path in sorted(TESTS.glob("*.py"))
             for name in sorted(_imported(path) & test_files)]
    bench = TESTS.parent / "bench"
    found += [f"bench/{path.name} imports tests/{name}.py" for path in sorted(bench.glob("*.py"))
              for name in sorted(_imported(path) & {path.stem for path in TESTS.glob("*.py")})]
    found += [f"bench/{path.name} puts tests/ on its path" for path in sorted(bench.glob("*.py"))
              if '"tests"' in path.read_text(encoding="utf-8")]
    assert not found, "\n".join(found)
