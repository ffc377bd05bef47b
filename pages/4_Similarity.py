"""Figure 6: how similar are the representations of every layer (CCA, SVCCA, PWCCA, CKA)."""

import streamlit as st

import dashboard
from ecco_core import plots
from ecco_core import similarity as sim

SOURCES = ("The current capture", "UD English EWT dev sentences", "Pasted text (one text per line)")

st.set_page_config(page_title="Similarity · Ecco Explorer", layout="wide")
lm, cap = dashboard.sidebar()
cap = dashboard.require_capture(cap)
st.title("Representation similarity")
st.caption(
    "The paper's Figure 6: the hidden states (the embeddings, then each block's output) against each block's "
    "FFN activations, scored from 0 "
    "(unrelated) to 1 (one is a linear transformation of the other). Token positions are the samples. CKA works "
    "on one prompt; the CCA family needs many more tokens than dimensions, so pool sentences for it."
)


@st.cache_data(max_entries=32, show_spinner=False)
def layer_matrix(_captures, key, method, kernel, keep, rows, columns, skip_special):
    return sim.layer_similarity(
        _captures, method, rows=rows, columns=columns, kernel=kernel, keep=keep, skip_special=skip_special
    )


def captured(texts):
    model = dashboard.current_settings()["model"]
    progress = st.progress(0.0, text=f"Capturing {len(texts)} texts…")
    captures = []
    for index, text in enumerate(texts):
        captures.append(dashboard.cached_capture(model, text, 0, ""))
        progress.progress((index + 1) / len(texts), text=f"Captured {index + 1} of {len(texts)} texts")
    progress.empty()
    return captures


left, middle, right = st.columns([2, 2, 3])
source = left.radio("Token positions from", SOURCES, key="similarity_source")
method = middle.selectbox(
    "Method", list(sim.METHODS), key="similarity_method",
    help="\n".join(f"- {name}: {entry.description}" for name, entry in sim.METHODS.items()),
)
kernel, keep = "linear", 0.99
if method == "cka":
    kernel = middle.radio("Kernel", list(sim.KERNELS), key="similarity_kernel", horizontal=True,
                          help="RBF bandwidth: the median distance between tokens.")
if method == "svcca":
    keep = middle.slider("Variance kept", 0.5, 1.0, 0.99, 0.01, key="similarity_keep")
rows = right.selectbox("Rows", list(sim.REPRESENTATIONS), key="similarity_rows", help=sim.REPRESENTATIONS["hidden"])
columns = right.selectbox("Columns", list(sim.REPRESENTATIONS), index=1, key="similarity_columns",
                          help=sim.REPRESENTATIONS["ffn"])
skip_special = right.checkbox("Leave out special tokens (BOS, [CLS], [SEP])", True, key="similarity_skip_special")

with dashboard.user_errors():
    if source == SOURCES[0]:
        captures, key = [cap], dashboard.capture_key(cap)
    elif source == SOURCES[1]:
        n_sentences = left.number_input("Sentences", 2, 200, 40, key="similarity_n_sentences",
                                        help="The first sentences of UD English EWT dev (CC BY-SA 4.0).")
        texts = sim.ud_sentences(int(n_sentences))
        captures, key = captured(texts), (cap.model_name, tuple(texts))
    else:
        pasted = left.text_area("Texts", key="similarity_pasted", height=150)
        texts = [line for line in pasted.splitlines() if line.strip()]
        if not texts:
            st.info("Paste one or more texts, one per line.")
            st.stop()
        captures, key = captured(texts), (cap.model_name, tuple(texts))
    with st.spinner("Comparing every pair of layers…"):
        result = layer_matrix(captures, key, method, kernel, keep, rows, columns, skip_special)
    if result.warning:
        st.warning(result.warning)
    figure = plots.similarity_heatmap(result)
    event = st.plotly_chart(figure, key="similarity_heatmap", on_select="rerun", selection_mode="points")
    cell = dashboard.clicked_cell(event)
    if cell is None:
        st.caption("Click a cell to read that pair of layers.")
    else:
        row, column = cell
        closest = int(result.values[row].argmax())
        st.markdown(
            f"**{result.row_labels[row]} vs {result.column_labels[column]}**: {result.label} = "
            f"{result.values[row, column]:.4f} over {result.n_samples} token positions. "
            f"1 would mean one is a linear transformation of the other, 0 that they are unrelated. "
            f"In this row, the closest column is {result.column_labels[closest]} "
            f"({result.values[row, closest]:.4f})."
        )
    dashboard.download_buttons(result.to_frame(), f"similarity-{method}-{rows}-{columns}", figure)
