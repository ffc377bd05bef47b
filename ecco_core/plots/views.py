"""What the interactive HTML views share: their scripts as package data, data as JSON, one bootstrap.

Every interactive view (:func:`~ecco_core.plots.saliency_view_html`,
:func:`~ecco_core.plots.factor_view_html`,
:func:`~ecco_core.plots.attention_head_view_html`,
:func:`~ecco_core.plots.circuits.routes_html`) is one ``<div>`` that holds
its fixed look in a ``<style>`` (:func:`view_style`, the file ``<name>_view.css``),
its markup (tokens escaped; only what depends on the data is styled inline), its
numbers in a ``<script type="application/json">`` block (:func:`json_block`) and,
standalone, an inline ``<script>`` (:func:`runner`): the file ``<name>_view.js``
and one call of the function it defines, ``ecco<Name>View(root)``, on the
view's root. The files are package data beside this module, read with
:mod:`importlib.resources` and inlined: nothing is fetched, so the same string
works in a notebook, a saved file and a page.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

#: Each view, by the stem of its files (``<view>_view.js``, ``<view>_view.css``), and the function its script
#: defines, which takes the view's root element.
VIEWS = {"saliency": "eccoSaliencyView", "factor": "eccoFactorView", "head": "eccoHeadView", "routes": "eccoRoutesView"}


@cache
def _package_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def view_script(view: str) -> str:
    """The JavaScript of ``view`` (a key of :data:`VIEWS`): it defines ``VIEWS[view]``."""
    return _package_file(f"{view}_view.js")


def view_style(view: str) -> str:
    """The CSS of ``view`` (a key of :data:`VIEWS`), its rules scoped to the view's class."""
    return _package_file(f"{view}_view.css")


def json_block(payload) -> str:
    """``payload`` as JSON in a ``<script type="application/json">``, the block a view's script reads.

    Inside ``<script>``, ``"</"`` would end the block: JSON's ``\\u`` escapes of
    ``<``, ``>`` and ``&`` keep any text in it (token text) inert.
    """
    data = json.dumps(payload).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json">{data}</script>'


def runner(view: str, view_id: str) -> str:
    """The inline ``<script>`` that runs ``view`` on the element ``view_id`` (a notebook, a file, an HTML block)."""
    return f"<script>{view_script(view)}\n{VIEWS[view]}(document.getElementById({json.dumps(view_id)}));</script>"
