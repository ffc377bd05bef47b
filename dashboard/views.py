"""The interactive views (saliency, factors) as components in the page: hovering needs no rerun."""

from __future__ import annotations

import streamlit as st

import ecco_core as ec
from ecco_core.plots import saliency_view_html
from ecco_core.plots.views import VIEWS, view_script


# The interactive views (ecco_core.plots.views) reach a page by what each needs. The saliency and factor views
# are components (below): in the page itself, at their own height, and their inline SVG is not sanitised (st.html
# strips the factor view's sparklines), and both send their pin back to Python. The head view builds
# its SVG in the browser and sends nothing back, so st.html runs it in the page at its own height.
def _view_component(view: str, trigger: str | None = None):
    """A component that shows ``data["html"]`` (a view's markup without its script) and runs the view's script
    on it; with ``trigger``, what the script reports comes back to Python as that trigger."""
    report = f', value => setTriggerValue("{trigger}", value)' if trigger else ""
    return st.components.v2.component(
        f"ecco_{view}_view",
        js=view_script(view) + f"""
export default function (component) {{
  const {{ data, parentElement, setTriggerValue }} = component;
  let host = parentElement.querySelector(":scope > .ecco-host");
  if (!host) {{
    host = document.createElement("div");
    host.className = "ecco-host";
    parentElement.appendChild(host);
  }}
  host.innerHTML = data.html;
  {VIEWS[view]}(host.firstElementChild{report});
}}
""",
        isolate_styles=False,  # not in a shadow root: the page's own look applies, as to the rest of the page
    )


_SALIENCY_VIEW = _view_component("saliency", trigger="pinned")
_FACTOR_VIEW = _view_component("factor", trigger="pinned")


def saliency_view(sal: ec.Saliency, position: int, *, signed: bool, key: str, on_pin) -> None:
    """The paper's Figure 3 in the page: hovering an explained token re-shades the text in the browser.

    Every row of ``sal`` travels to the browser once; hovering needs no rerun.
    Clicking a token pins it and calls ``on_pin(position)`` before the next
    run (a callback, so it may set widgets drawn above the view).
    """
    _SALIENCY_VIEW(
        key=key, data={"html": saliency_view_html(sal, position, signed=signed, script=False)},
        on_pinned_change=lambda: on_pin(int(st.session_state[key]["pinned"])),
    )


def factor_view(result: ec.Factors, cap: ec.Capture, *, key: str, on_pin) -> None:
    """The paper's Figure 9 in the page: hovering a sparkline shows its factor alone on the text, in the browser.

    Clicking a sparkline pins its factor and calls ``on_pin(factor)`` before the
    next run (a callback, so it may set the page's own factor widgets).
    """
    _FACTOR_VIEW(
        key=key, data={"html": result.to_html(cap.tokens, cap.n_input, script=False)},
        on_pinned_change=lambda: on_pin(int(st.session_state[key]["pinned"])),
    )
