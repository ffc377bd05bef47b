"""Part-of-speech probes with control tasks at every layer: the Ecco paper's Table 1."""

import streamlit as st

import dashboard
import ecco_core as ec
from dashboard import settings as limits
from ecco_core import probing
from ecco_core.layers import EMBEDDINGS, block_label
from ecco_core.plots import probe_lines

BUNDLED = {"UD English EWT dev (bundled)": probing.UD_ENGLISH_EWT_DEV}
UPLOAD = "Upload a .conllu file"
LEARNING_RATES = {"0.001 (the paper's best)": 1e-3, "0.1": 0.1, "0.00001": 1e-5,
                  "best of the three": probing.LEARNING_RATES}

st.set_page_config(page_title="Probing", layout="wide")
lm, cap = dashboard.sidebar()
cap = dashboard.require_capture(cap)
st.title("Part-of-speech probes")
st.caption(
    "A linear probe per layer learns to predict each word's part of speech (UPOS) from the embeddings, "
    "from each block's output (hidden, 'block i') and from its FFN activations ('block i FFN'). A second probe learns a control task where every "
    "word type has a fixed random tag (Hewitt & Liang, 2019): selectivity = accuracy − control "
    "accuracy, high when the layer encodes part of speech rather than letting the probe memorise words. "
    "A word's tag sits on its first sub-token. All probes of a run train together as one batched model."
)


@st.cache_data(max_entries=16, ttl=limits.CACHE_TTL_SECONDS, show_spinner=False)
def cached_table(model_name: str, corpus, n_tokens: int, layers: tuple, trials: int, epochs: int, lr, _progress):
    return ec.probe_table(
        dashboard.cached_model(model_name), corpus, n_tokens=n_tokens, trials=trials, epochs=epochs,
        lr=lr, layers=list(layers), progress=_progress,
    )


layer_choices = [EMBEDDINGS] + list(range(lm.n_layers))
with st.form("probe-settings"):
    left, middle, right = st.columns(3)
    source = left.radio("Data", list(BUNDLED) + [UPLOAD], key="probe_data")
    upload = left.file_uploader(
        f"CoNLL-U file (UTF-8, with UPOS tags; at most {limits.MAX_UPLOAD_MB} MB)", type=["conllu"],
        key="probe_upload", max_upload_size=limits.MAX_UPLOAD_MB,
        help="Larger files are refused before they reach the server (ECCO_MAX_UPLOAD_MB).",
    )
    n_tokens = middle.number_input(
        "Tokens", min_value=100, max_value=limits.MAX_PROBE_TOKENS, value=min(10_000, limits.MAX_PROBE_TOKENS),
        step=500, key="probe_tokens",
        help=f"Labelled words to probe (the paper: 10,000). At most {limits.MAX_PROBE_TOKENS} here "
        "(ECCO_MAX_PROBE_TOKENS). 67% train, 33% test.",
    )
    layers = middle.multiselect(
        "Layers", layer_choices, default=layer_choices, key="probe_layers",
        format_func=lambda layer: layer if layer == EMBEDDINGS else block_label(layer),
        help="The embeddings, and blocks (each block's output and its FFN).",
    )
    trials = right.slider("Trials", 1, 10, 5, key="probe_trials", help="Each with its own split and control task.")
    epochs = right.number_input("Epochs", min_value=1, max_value=200, value=50, key="probe_epochs")
    rate = right.selectbox("Adam learning rate", list(LEARNING_RATES), key="probe_lr")
    submitted = st.form_submit_button("Run probes", type="primary")

if submitted:
    st.session_state["probe_run_model"] = lm.name
# A run is minutes of work: switching models in the sidebar waits for Run probes again.
if st.session_state.get("probe_run_model") != lm.name:
    st.info(f"Choose the data and settings, then press Run probes. Model: {dashboard.literal(lm.name)} ({lm.n_layers} layers).")
    st.stop()

table = None
with dashboard.user_errors():
    if source == UPLOAD:
        if upload is None:
            raise ValueError("upload a .conllu file, or pick the bundled data")
        corpus = upload.getvalue()
    else:
        corpus = str(BUNDLED[source])
    bar = st.progress(0.0, text="Starting…")
    table = cached_table(
        lm.name, corpus, int(n_tokens), tuple(layers), int(trials), int(epochs), LEARNING_RATES[rate],
        lambda fraction, message: bar.progress(min(1.0, fraction), text=message),
    )
    bar.empty()

if table is not None:
    st.subheader(f"Table 1 for {dashboard.literal(lm.name)}")
    if (coarse := probing.small_corpus_warning(table.attrs["n_tokens"])) is not None:
        st.warning(f"Only {table.attrs['n_tokens']} labelled tokens: {coarse}.")
    st.caption(
        f"Percent, mean ± standard deviation over {trials} trial{'s' if trials != 1 else ''}; "
        f"learning rate {table['lr'].iloc[0]:g}. "
        f"Always answering the most frequent tag scores {100 * table['majority_accuracy'].iloc[0]:.1f}%."
    )
    accuracy_figure = probe_lines(table, "accuracy", title="Accuracy on the real tags")
    selectivity_figure = probe_lines(table, "selectivity", title="Selectivity (accuracy − control accuracy)")
    left, right = st.columns(2)
    left.plotly_chart(accuracy_figure, key="probe_accuracy_chart")
    right.plotly_chart(selectivity_figure, key="probe_selectivity_chart")
    percent = {column: "{:.1f}" for column in
               ("accuracy", "accuracy_std", "selectivity", "selectivity_std", "control_accuracy")}
    shown = table.drop(columns=["majority_accuracy", "lr"]).copy()
    shown[list(percent)] = 100 * shown[list(percent)]
    st.dataframe(shown.style.format(percent), hide_index=True, key="probe_table")
    dashboard.download_buttons(table, "probing-table1", accuracy_figure)
    with st.expander("The paper's Table 1 (BERT-base, 12 blocks) for comparison"):
        st.markdown(probing.table1_markdown(probing.paper_table1()))
