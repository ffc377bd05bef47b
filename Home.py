"""Ecco Explorer: the home page (what each view shows, an example each, the next-token heatmap)."""

from pathlib import Path

import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import plots

PASSAGE = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based ink and a wooden press adapted from those used to make wine. Within a few "
    "decades printing shops had spread from Mainz to more than two hundred cities across Europe."
)
# (page file, title, what it shows, the example, its run settings)
VIEWS = [
    ("pages/1_Saliency.py", "Saliency",
     "How much each earlier token is responsible for each generated token (gradient × input and friends, "
     "for the whole generation in one batched pass). Click a generated token to see what it leaned on.",
     "*Romeo and Juliet was written by* → which words point at the name it writes?",
     dict(model=ec.DEFAULT_MODEL, text="Romeo and Juliet was written by", new=5)),
    ("pages/2_Layer_predictions.py", "Layer predictions",
     "The logit lens: the rank of each output token at every layer, and candidate words watched side by side.",
     "*The keys to the cabinet* → at which layer does *are* overtake *is*?",
     dict(model=ec.DEFAULT_MODEL, text="The keys to the cabinet", new=1)),
    ("pages/3_Neuron_factors.py", "Neuron factors",
     "The FFN neurons' activations split into a few factors (NMF, PCA or ICA); each token is coloured by the "
     "factor it excites, so groups of neurons that track syntax or topic stand out.",
     "a passage on the printing press → factors for function words, names, places",
     dict(model=ec.DEFAULT_MODEL, text=PASSAGE, new=0)),
    ("pages/4_Similarity.py", "Similarity",
     "CCA, SVCCA, PWCCA and CKA between the layers' hidden states and FFN activations: which layers "
     "represent the text alike.",
     "the same passage → neighbouring layers agree, distant ones drift apart",
     dict(model=ec.DEFAULT_MODEL, text=PASSAGE, new=0)),
    ("pages/5_Probing.py", "Probing",
     "Linear probes for part of speech at every layer, with control tasks that tell knowledge from "
     "memorisation (the Ecco paper's Table 1).",
     "the encoder on bundled Universal Dependencies sentences",
     dict(model=ec.DEFAULT_ENCODER, text="The keys to the cabinet are on the table.", new=0)),
    ("pages/6_Causal_tracing.py", "Causal tracing",
     "Activation patching: run a corrupted prompt, put back one block output, attention or FFN output from the "
     "clean run, and see how much of the answer returns, at every block and position (ROME's Figure 1), "
     "beside its one-backward-pass approximation.",
     "*When Mary and John went to the store, John gave a drink to* → which blocks carry *Mary*?",
     dict(model=ec.DEFAULT_MODEL, text="When Mary and John went to the store, John gave a drink to", new=1)),
    ("pages/7_Attention.py", "Attention",
     "What every head of every block reads from: bertviz's model view (a map per head, click one to open it) "
     "and head view (tokens joined by lines, hover a token, toggle heads), as raw weights, value-weighted "
     "(how much each head moves) or rollout; offline, on every family.",
     "*The keys to the cabinet are on the table.* on the encoder → which heads link *keys* to *are*?",
     dict(model=ec.DEFAULT_ENCODER, text="The keys to the cabinet are on the table.", new=0)),
    ("pages/8_Circuits.py", "Circuits",
     "Which attention heads and FFNs write the answer (direct logit attribution, click a head for its attention), "
     "the information-flow routes from the input tokens to the prediction, and a check of both by ablating "
     "the parts (Verify by patching).",
     "*When Mary and John went to the store, John gave a drink to* → which heads move *Mary*?",
     dict(model=ec.DEFAULT_MODEL, text="When Mary and John went to the store, John gave a drink to", new=1)),
]
# Views that read the model's predictions, so need its language-modelling head (the bundled encoder has none).
NEEDS_HEAD = {"Saliency", "Layer predictions", "Causal tracing", "Circuits"}
ROOT = Path(__file__).resolve().parent


def shown_tokens(frame):
    """``frame`` with its token columns as every chart shows them (a space alone as ␣, a newline as ↵).

    Downloads keep the text itself.
    """
    columns = [column for column in ("token", "prediction", "next_token_prediction") if column in frame]
    return frame.assign(**{column: frame[column].map(plots.display_token) for column in columns})


st.set_page_config(page_title="Ecco Explorer", page_icon="🔎", layout="wide")
lm, cap = dashboard.sidebar()

st.title("Ecco Explorer")
st.markdown(
    "Look inside a Transformer language model as it reads and writes text. Pick a model and a prompt in the "
    "sidebar and press **Run**; every view reads that same run, and the address bar holds it, so a copied "
    "link reopens what you see."
)

# The run comes first, so a visitor sees its chart without scrolling; the views and their examples follow.
selected = None
if cap is not None:
    st.subheader("Text")
    text_slot = st.empty()
    # An encoder's run (or a text with no new tokens) generates nothing: no promise of underlines then.
    hover = "Generated tokens are underlined; hover" if cap.n_generated else "Hover"
    st.caption(f"{hover} a token for its position.")
    dashboard.computed_on(lm)

    if cap.top_ids.shape[1]:
        st.subheader("What the model expected next")
        st.caption(
            "Each column is a position, each row one of the model's top candidates there, coloured by "
            "probability; hover a cell for its candidate (written in the cell when there is room). Click a cell "
            "to pick a position."
        )
        n_candidates = min(5, cap.top_ids.shape[1])
        # The clicked cell is in the URL ("rank,position"), so a copied link reopens it; another run starts unpicked.
        cells = {f"{rank},{position}" for rank in range(n_candidates) for position in range(cap.n_tokens)}
        picked = dashboard.page_param("home_cell", "", choices=cells | {""}, source=dashboard.capture_key(cap))
        pinned = tuple(int(part) for part in picked.split(",")) if picked else None
        figure = plots.next_token_heatmap(cap, n_candidates, pinned=pinned)
        predictions = cap.predictions_frame(n_candidates)
        st.plotly_chart(
            figure, selection_mode="points", key="candidates",
            on_select=dashboard.on_cell_click("candidates", lambda cell: {"home_cell": f"{cell[0]},{cell[1]}"}),
        )
        dashboard.download_buttons(predictions, "next-token-candidates", figure)
        if pinned is not None:
            selected = pinned[1]
            st.markdown(f"**After position {selected}** (outlined above) the model expected:")
            st.dataframe(shown_tokens(predictions.loc[predictions["position"] == selected,
                                                      ["rank", "prediction", "probability"]]), hide_index=True)

    with text_slot:
        dashboard.show_tokens(cap, selected=selected)

with st.expander("The views, with an example each", expanded=True):
    for page_file, title, summary, example, settings in VIEWS:
        text_column, action_column = st.columns([4, 1], vertical_alignment="center")
        text_column.markdown(f"**{title}**: {summary}  \nExample: {example}")
        action_column.button(
            "Load example", key=f"home_example_{title.lower().replace(' ', '_')}", on_click=dashboard.load_settings,
            kwargs=settings, width="stretch",
        )
        if (ROOT / page_file).exists():
            # No link to a page that cannot work on the model now loaded (the encoder's examples leave it loaded).
            unable = title in NEEDS_HEAD and lm is not None and not lm.has_head
            action_column.page_link(
                page_file, label=f"Open {title} →", disabled=unable,
                help=f"{dashboard.literal(lm.name)} has no language-modelling head, so it predicts nothing for "
                "this view: load this view's example, or a model with a head, first." if unable else None,
            )

cap = dashboard.require_capture(cap)

st.subheader("Tokens")
frame = cap.to_frame()
st.dataframe(shown_tokens(frame), hide_index=True, width="stretch")
st.download_button(
    "Download tokens (CSV)", lambda: frame.to_csv(index=False), "tokens.csv", "text/csv", on_click="ignore"
)
