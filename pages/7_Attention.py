"""Attention: what every head of every block looks at (bertviz's model and head views), offline."""

import streamlit as st

import dashboard
import ecco_core as ec
from dashboard import settings as limits
from ecco_core import plots
from ecco_core.layers import block_label

lm, cap = dashboard.page(
    "Attention",
    "Which tokens each head of each block reads from. **Raw weights** are the softmax of each head (rows sum "
    "to 1); **value-weighted** scales each weight by the size of the vector the head actually moves "
    "(Kobayashi et al. 2020), so the large weight many heads park on the first token or [SEP] as a no-op "
    "shrinks; **rollout** multiplies the head-averaged maps from block 0 up, with the residual path added "
    "(Abnar & Zuidema 2020). Click a map of the model view to open that head.",
    tab="Attention · Ecco Explorer", runs_here="Attention (its weights need the model's eager attention)",
)


controls = st.columns([2, 1, 1, 1])
dashboard.page_param("attention_method", "raw", choices=ec.ATTENTION_METHODS)
method = controls[0].selectbox(
    "Scores", list(ec.ATTENTION_METHODS), format_func=lambda name: ec.ATTENTION_METHODS[name].title,
    key="attention_method",
    help="\n\n".join(f"**{entry.title}**: {entry.description}" for entry in ec.ATTENTION_METHODS.values()),
)
# Only the blocks on screen are computed: a long prompt's model view shows as many as the budget holds.
n_shown = ec.attention.blocks_that_fit(lm, cap.n_tokens, method, max_bytes=limits.ATTENTION_MB * 2**20)
first = 0
if n_shown < lm.n_layers:
    starts = range(lm.n_layers - n_shown + 1)
    dashboard.page_param("attention_from", 0, choices=starts)  # another prompt's start goes back to 0
    first = controls[1].selectbox(
        "From block", starts, format_func=block_label, key="attention_from",
        help=f"{cap.n_tokens} tokens: {n_shown} blocks at a time fit this deployment's "
        f"{limits.ATTENTION_MB} MiB for attention maps (ECCO_ATTENTION_MB).",
    )
blocks = list(range(first, first + n_shown))

att = dashboard.quick_analysis(
    "Computing attention…",
    lambda: ec.attention(lm, cap, method, layers=blocks, max_bytes=limits.ATTENTION_MB * 2**20),
    key="attention", settings=(dashboard.capture_key(cap), method, blocks[0], blocks[-1]),
)

dashboard.page_param("attention_block", blocks[0], choices=blocks)
block = controls[2].selectbox("Block", blocks, format_func=block_label, key="attention_block",
                              help="Or click a map of the model view.")
if att.n_heads == 1:
    # One map per block: a select of its own, so the head chosen for the per-head methods (its widget, its
    # remembered value and its link) is left as it was and comes back with them.
    head = controls[3].selectbox("Head", [0], format_func=att.heads.__getitem__, key="attention_one_map",
                                 disabled=True, help="This method draws one map per block.")
else:
    dashboard.page_param("attention_head", 0, choices=range(att.n_heads))
    head = controls[3].selectbox("Head", range(att.n_heads), format_func=att.heads.__getitem__,
                                 key="attention_head", help="Or click a map of the model view.")

dashboard.computed_on(lm)
model_column, head_column = st.columns([2, 3])
with model_column:
    st.subheader("Model view")
    if n_shown < lm.n_layers:
        st.caption(f"{block_label(blocks[0])} to {block_label(blocks[-1])} of {lm.n_layers}; pick others with "
                   "*From block*.")
    st.caption("Each map: query tokens down, key tokens across, scaled to its own peak (colour: square root).")
    st.plotly_chart(plots.attention_model_view(att, selected=(block, head)), key="attention_model_view",
                    selection_mode="points", width="content",
                    on_select=dashboard.on_cell_click(  # a click on a map opens its block (and head)
                        "attention_model_view", lambda cell: {"attention_block": cell[0]} if att.n_heads == 1
                        else {"attention_block": cell[0], "attention_head": cell[1]}))
with head_column:
    st.subheader("Head view")
    head_view = att.to_html(block)
    # In the page at its own height: it sends nothing back and builds its SVG in the browser (see dashboard's
    # note above saliency_view on how each interactive view is embedded).
    st.html(head_view, unsafe_allow_javascript=True)
    st.subheader("Map of the selected head")
    figure = plots.attention_heatmap(att, block, head)
    st.plotly_chart(figure, key="attention_heatmap", width="stretch")

st.markdown(f"**Download**: every head of {block_label(block)}")
stem = f"attention-{method}-block-{block}"
# Made on click: a long prompt's block is a million rows.
dashboard.download_buttons(lambda: att.to_frame(layers=[block]), stem, figure)
head_view_file = (f'<!doctype html><html><head><meta charset="utf-8"><title>{stem}</title></head>'
                  f"<body>{head_view}</body></html>")
st.download_button("Head view (HTML, works offline)", head_view_file, f"{stem}-head-view.html", "text/html",
                   key="attention_head_view_html", on_click="ignore")
