"""Functions short enough to read whole: none in ``ecco_core`` over 60 lines of code (#27).

Lines of code are the function's lines (signature included) less blank lines, comment lines and its
docstring. Every module of the package is under the rule, a new one included.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecco_core"  # read, not imported
LIMIT = 60


def code_lines(function: ast.FunctionDef, lines: list[str]) -> int:
    """Lines of code of ``function`` in the module whose lines are ``lines``."""
    skipped = set()
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        skipped = set(range(first.lineno, first.end_lineno + 1))
    return sum(
        1 for number in range(function.lineno, function.end_lineno + 1)
        if number not in skipped and lines[number - 1].strip() and not lines[number - 1].strip().startswith("#")
    )


def long_functions(source: str, name: str) -> list[str]:
    lines = source.splitlines()
    return [
        f"{name}:{node.lineno} {node.name} has {count} lines of code"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (count := code_lines(node, lines)) > LIMIT
    ]


def test_no_function_over_60_lines_of_code():
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 1
    found = [problem for path in paths for problem in long_functions(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert not found, "\n".join(found)


def test_the_count_leaves_out_the_docstring_comments_and_blank_lines():
    body = "\n".join(f"    x{index} = {index}" for index in range(LIMIT))
    source = f'def f():\n    """A docstring\n\n    of three lines."""\n    # a comment\n\n{body}\n'
    assert long_functions(source, "f.py") == ["f.py:1 f has 61 lines of code"]  # the signature and 60 lines
    assert long_functions(source.replace("    x0 = 0\n", ""), "f.py") == []
