"""Layer predictions: the logit lens (the Ecco paper's Figures 7 and 8)."""

import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import plots
from ecco_core.lens import KINDS
from ecco_core.text import bare_token, position_text

lm, cap = dashboard.page(
    "Layer predictions",
    "Every block's output (block 0 to the last block) goes through the model's own final norm and LM head, "
    "as if it were the last layer (the logit lens). Rank 1 = the token that block's output would produce.",
)
dashboard.require_head(lm, "the lens to rank")


def parity_line(result: ec.Rankings) -> None:
    diff = result.max_abs_diff_vs_model
    # Streamlit's bundled icon font, not an emoji: a machine without an emoji font draws those as boxes.
    mark = ":material/check_circle:" if diff < 1e-4 else ":material/warning:"
    st.caption(f"{mark} last block = model output, max |logit diff| {diff:.1e} (measured on a real forward pass)")


def check_rankable() -> None:
    """Said in the words of the sidebar (the library names the capture it was given)."""
    if lm.is_causal and cap.n_tokens < 2:
        raise ValueError("The prompt is one token and Max new tokens is 0: there is no next token to rank; "
                         "give a longer prompt or some new tokens")
    if not lm.is_causal and cap.special.all():
        raise ValueError("The prompt holds special tokens only: there is nothing to rank")


# The ranks and how far to trust each row (the tuned-lens diagnostics) from one pass of the lens (on NDIF,
# one request that sends back both).
result, diagnostics = dashboard.quick_analysis(
    "Reading every block's output…", lambda: ec.trust.rankings_and_diagnostics(lm, cap, k=5),
    key="lens", settings=(dashboard.capture_key(cap), lm.backend.traced), check=check_rankable,
)

# ---- Figure 7: rank of each output token at every block's output
st.subheader("Rank of each output token at every block's output")
st.caption(f"Columns: {KINDS[result.kind]}. Hover a cell for that block's top 5; click one to follow its token.")
parity_line(result)
dashboard.computed_on(lm)
# Beside the heatmap, row for row: from which block on the lens can be read at all (the tuned-lens diagnostics).
figure = plots.rankings_figure(result, diagnostics=diagnostics)
st.plotly_chart(figure, selection_mode="points", key="lens_heatmap", width="stretch",
                on_select=dashboard.on_cell_click("lens_heatmap", lambda cell: {"lens_token": cell[1]}))
agreeing = diagnostics.first_layer_agreeing()
st.caption(
    f"How far to trust each row (right of the heatmap): KL from the output's distribution to the lens's, and "
    f"the share of the {len(diagnostics.positions)} positions where their top tokens agree. "
    + (f"More than half agree from {agreeing} on." if agreeing else "No block agrees on more than half.")
)

labels = [position_text(p, t) for p, t in zip(result.target_positions, result.targets)]  # as the heatmap's columns
# In the URL too; a new capture starts at its first token.
dashboard.page_param("lens_token", 0, choices=range(result.n_columns), source=dashboard.capture_key(cap))
column = st.selectbox("Token", range(result.n_columns), format_func=labels.__getitem__, key="lens_token")
st.plotly_chart(
    plots.layer_probability_figure(result, [column], title=f"Probability of {labels[column]} by block"),
    key="lens_line", width="stretch",
)
dashboard.download_buttons(diagnostics.beside(result.to_frame()), "layer-predictions", figure)

# ---- Figure 8: candidates side by side at one position
st.subheader("Compare candidates at one position")
masked_hint = "" if lm.is_causal else " Put one [MASK] where the candidates go."
st.caption(
    "Which token would each block's output put next? Words are read as they follow the text (\"is\" → \" is\"); "
    "a word of several tokens is ranked by its first token." + masked_hint
)
# The text, candidates and picked suggestions are in the URL too, so a copied link compares the same ones.
# A new capture starts from its own text.
dashboard.page_param("watch_text", cap.settings.text or cap.prompt_text, source=dashboard.capture_key(cap))
watch_text = st.text_area("Text", key="watch_text", height=80)
dashboard.page_param("watch_words", "")
words_input = st.text_input("Candidates (comma-separated)", key="watch_words", placeholder="is, are")

if not watch_text.strip():
    st.error("Text is empty: type the text whose next token the candidates compete for.")
    st.stop()
suggestions = dashboard.quick_analysis(None, lambda: ec.suggest_candidates(lm, watch_text, k=3),
                                       key="lens_suggestions", settings=(lm.name, watch_text), beside=True)
picked = []
if suggestions is not None and len(suggestions):
    display = dict(zip(suggestions.token_ids.tolist(), suggestions.tokens))
    # Another text's suggestions start unpicked.
    dashboard.page_param("watch_pills", [], choices=display, source=(lm.name, watch_text))
    # Suggestions start unselected: what the user typed is compared on its own until a chip is clicked.
    picked = st.pills(
        "Suggested: in the top 3 at some block's output (click to add)",
        list(display), selection_mode="multi",
        format_func=lambda token_id: dashboard.literal(bare_token(display[token_id])),  # as the candidates' columns
        key="watch_pills",
    ) or []

candidates = tuple(word for word in (w.strip() for w in words_input.split(",")) if word) + tuple(picked)
if not candidates:
    st.info("Type candidates or click suggested ones.")
    st.stop()
watched = dashboard.quick_analysis(None, lambda: ec.watch(lm, watch_text, list(candidates), k=5),
                                   key="lens_watch", settings=(lm.name, watch_text, candidates))
for note in watched.notes:
    st.caption(f"ℹ️ {dashboard.literal(note)}")
parity_line(watched)
watch_figure = plots.rankings_figure(watched)
st.plotly_chart(watch_figure, key="watch_heatmap", width="stretch")
st.plotly_chart(
    plots.layer_probability_figure(watched, range(watched.n_columns), title="Probability by block"),
    key="watch_line", width="stretch",
)
dashboard.download_buttons(watched.to_frame(), "candidate-rankings", watch_figure)
