"""Every result's table names its columns as code does: no spaces, so a CSV column is a usable name (#27 §5).

Read from the source, not run: every ``to_frame`` in ``ecco_core`` and the column names it writes literally (dict
keys, ``frame["name"] = ...``, ``frame.insert(i, "name", ...)``). Display tables (``Neurons.table``,
``Patching.predictions_frame``) are not downloads and keep words for their headers.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ecco_core"  # read, not imported


def literal_columns(function: ast.FunctionDef) -> list[str]:
    """The column names a function writes as string literals."""
    names = []
    for node in ast.walk(function):
        if isinstance(node, ast.Dict):
            names += [key.value for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]
        elif isinstance(node, ast.Assign):
            names += [target.slice.value for target in node.targets if isinstance(target, ast.Subscript)
                      and isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "insert"
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
            names.append(node.args[1].value)
    return names


def test_to_frame_columns_have_no_spaces():
    frames, spaced = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "to_frame":
                frames += 1
                spaced += [f"{path.relative_to(PACKAGE)}:{node.lineno} {name!r}" for name in literal_columns(node)
                           if any(character.isspace() for character in str(name))]
    assert frames >= 15, frames  # the walk found the library's results
    assert not spaced, spaced
