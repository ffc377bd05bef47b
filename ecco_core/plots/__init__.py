"""Pure figure and HTML builders: data in, ``go.Figure`` or an HTML string out, one module per view.

No Streamlit and no computing here; every builder works the same in a
notebook (``fig.show()``, ``IPython.display.HTML(...)``). Token text reaches
a figure through :mod:`ecco_core.text` (escaped, whitespace shown), and
builders take titles as plain text and escape them themselves. Every public
name is importable from here (``from ecco_core.plots import saliency_heatmap``).
"""

from ..text import axis_labels, cell_token, display_token, escape_text, escape_token, position_labels
from .attention import MARKED_TOKENS, attention_head_view_html, attention_heatmap, attention_model_view, head_colors
from .common import heatmap
from .factors import FACTOR_COLORS, factor_levels, factor_sparklines, factor_view_html
from .lens import layer_probability_figure, rankings_figure
from .patching import SITE_COLORS, SITES_TITLES, patching_figure, patching_heatmap, patching_scatter
from .predictions import NEXT_TOKEN_CHAR_PX, NEXT_TOKEN_MIN_CHARS, NEXT_TOKEN_PLOT_PX, next_token_heatmap
from .probing import probe_lines
from .saliency import (
    SALIENCY_VIEW_SCRIPT, SHARE_COLOR, SIGNED_COLORS, saliency_bars, saliency_heatmap, saliency_row_bars,
    saliency_view_html,
)
from .similarity import similarity_heatmap
from .tokens import token_bars, token_html
from .trust import faithfulness_bars

__all__ = [
    "FACTOR_COLORS", "MARKED_TOKENS", "NEXT_TOKEN_CHAR_PX", "NEXT_TOKEN_MIN_CHARS", "NEXT_TOKEN_PLOT_PX",
    "SALIENCY_VIEW_SCRIPT", "SHARE_COLOR", "SIGNED_COLORS", "SITES_TITLES", "SITE_COLORS",
    "attention_head_view_html", "attention_heatmap", "attention_model_view", "axis_labels", "cell_token",
    "display_token", "escape_text", "escape_token", "factor_levels", "factor_sparklines", "factor_view_html",
    "head_colors", "heatmap", "layer_probability_figure", "patching_figure", "patching_heatmap", "patching_scatter",
    "position_labels", "probe_lines", "rankings_figure", "saliency_bars", "saliency_heatmap", "saliency_row_bars",
    "saliency_view_html", "similarity_heatmap", "token_bars", "token_html",
]
