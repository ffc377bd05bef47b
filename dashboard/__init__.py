"""Streamlit-only helpers shared by every page, one module per concern; pages use them as ``dashboard.name``.

Every page starts with ``lm, cap = dashboard.page(title, caption)``. The modules:

- :mod:`~dashboard.models`: the shared model and the captures, cached once for all sessions;
- :mod:`~dashboard.url`: what is on screen lives in the URL, so a copied link reproduces the view
  (the sidebar's run settings, and each page's widgets through :func:`page_param`);
- :mod:`~dashboard.preamble`: what every page starts with (:func:`page`): the sidebar (model, prompt, Run),
  the guard for a page without a capture, the title;
- :mod:`~dashboard.widgets`: widgets several pages draw alike (examples, clicked cells, downloads);
- :mod:`~dashboard.text`: user text shown literally, input errors as errors, a capture's tokens shaded;
- :mod:`~dashboard.views`: the interactive saliency and factor views as components;
- :mod:`~dashboard.long_work`: analyses cached once for all sessions within a byte budget, long ones
  announced with their estimate, shown in progress and stoppable (:func:`analysis`, every page's one call;
  :func:`quick_analysis` for work of a second or two);
- :mod:`~dashboard.backend`: where the model runs (this machine or NDIF), chosen in the sidebar; pages say it
  under their results (:func:`computed_on`) and refuse what NDIF cannot run (:func:`needs_this_machine`);
- :mod:`~dashboard.settings`: the limits of a shared deployment; :mod:`~dashboard.shared_cache`: the caches.

The names below are the pages' vocabulary: pages ``import dashboard`` and call ``dashboard.name``.
"""

from .backend import computed_on, needs_this_machine
from .long_work import analysis, cached_analysis, duration, estimated_where, long_work, quick_analysis, run_button
from .models import cached_capture, capture_key, checked_prompt, preload_model
from .preamble import OTHER_MODEL, load_settings, page, require_capture, require_head, sidebar
from .text import literal, show_tokens, user_errors
from .url import DEFAULT_PROMPTS, page_param
from .views import factor_view, saliency_view
from .widgets import clicked_cell, download_buttons, example_picker, on_cell_click

__all__ = [
    "DEFAULT_PROMPTS", "OTHER_MODEL", "analysis", "cached_analysis", "cached_capture", "capture_key",
    "checked_prompt", "clicked_cell", "computed_on", "download_buttons", "duration", "estimated_where",
    "example_picker", "factor_view", "literal", "load_settings", "long_work", "needs_this_machine", "on_cell_click",
    "page", "page_param", "preload_model", "quick_analysis", "require_capture", "require_head", "run_button",
    "saliency_view", "show_tokens", "sidebar", "user_errors",
]
