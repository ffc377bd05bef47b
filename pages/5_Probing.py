"""Part-of-speech probes with control tasks at every layer: the Ecco paper's Table 1."""

import hashlib

import streamlit as st

import dashboard
import ecco_core as ec
from dashboard import settings as limits
from ecco_core import estimates, probing
from ecco_core.layers import EMBEDDINGS, block_label
from ecco_core.plots import probe_lines

BUNDLED = "bundled"
DATA = {BUNDLED: "UD English EWT dev (bundled)", "upload": "Upload a .conllu file"}
LEARNING_RATES = {"0.001": 1e-3, "0.1": 0.1, "0.00001": 1e-5, "best": probing.LEARNING_RATES}
RATE_NAMES = {"0.001": "0.001 (the paper's best)", "0.1": "0.1", "0.00001": "0.00001",
              "best": "best of the three (the paper's search)"}
PRESETS = {"quick": "Quick look", "paper": "The paper's protocol (Table 1)", "custom": "Custom"}


def layer_name(layer: str) -> str:
    return layer if layer == EMBEDDINGS else block_label(int(layer))


def preset_values(preset: str, n_layers: int) -> dict:
    """The widget values of a library preset (:func:`ecco_core.probing.preset`), within this deployment's limit."""
    chosen = probing.preset(preset, n_layers, max_tokens=limits.MAX_PROBE_TOKENS)
    rate = next(name for name, value in LEARNING_RATES.items() if value == chosen.lr)
    return dict(probe_tokens=chosen.n_tokens, probe_layers=[str(layer) for layer in chosen.layers],
                probe_trials=chosen.trials, probe_epochs=chosen.epochs, probe_lr=rate)


def mark_custom() -> None:
    st.session_state["probe_preset"] = "custom"


lm, cap = dashboard.page(
    "Part-of-speech probes",
    "A linear probe per layer learns to predict each word's part of speech (UPOS) from the embeddings, "
    "from each block's output (hidden, 'block i') and from its FFN activations ('block i FFN'). A second probe learns a control task where every "
    "word type has a fixed random tag (Hewitt & Liang, 2019): selectivity = accuracy − control "
    "accuracy, high when the layer encodes part of speech rather than letting the probe memorise words. "
    "A word's tag sits on its first sub-token. All probes of a run train together as one batched model.",
    tab="Probing",
)

# Every setting lives in the URL too, so a copied link reopens this exact view (an upload excepted).
quick = preset_values("quick", lm.n_layers)
layer_choices = [EMBEDDINGS] + [str(block) for block in range(lm.n_layers)]
if dashboard.page_param("probe_preset", "quick", choices=PRESETS) != "custom":
    # A preset sets every value below; changing one of them makes the preset Custom (mark_custom).
    st.session_state.update(preset_values(st.session_state["probe_preset"], lm.n_layers))
dashboard.page_param("probe_data", BUNDLED, choices=DATA)
dashboard.page_param("probe_tokens", quick["probe_tokens"])
dashboard.page_param("probe_layers", quick["probe_layers"], choices=layer_choices)
dashboard.page_param("probe_trials", quick["probe_trials"])
dashboard.page_param("probe_epochs", quick["probe_epochs"])
dashboard.page_param("probe_lr", quick["probe_lr"], choices=LEARNING_RATES)


def preset_label(preset: str) -> str:
    """The preset's name and, for quick and paper, its estimate on this machine (the one the page shows below)."""
    if preset == "custom":
        return PRESETS[preset]
    chosen = probing.preset(preset, lm.n_layers, max_tokens=limits.MAX_PROBE_TOKENS)
    seconds = estimates.probing_seconds(lm, probing.UD_ENGLISH_EWT_DEV, **chosen.arguments())
    return f"{PRESETS[preset]} ({dashboard.duration(seconds)})"


preset = st.radio("Preset", list(PRESETS), format_func=preset_label, key="probe_preset", horizontal=True,
                  help="\n\n".join(f"{PRESETS[name]}: {description}." for name, description in probing.PRESETS.items())
                  + "\n\nChanging a setting below makes it Custom.")
left, middle, right = st.columns(3)
source = left.radio("Data", list(DATA), format_func=DATA.get, key="probe_data")
upload = left.file_uploader(
    f"CoNLL-U file (UTF-8, with UPOS tags; at most {limits.MAX_UPLOAD_MB} MB)", type=["conllu"],
    key="probe_upload", max_upload_size=limits.MAX_UPLOAD_MB,
    help="Larger files are refused before they reach the server (ECCO_MAX_UPLOAD_MB).",
)
n_tokens = middle.number_input(
    "Tokens", min_value=100, max_value=limits.MAX_PROBE_TOKENS, step=500, key="probe_tokens", on_change=mark_custom,
    help=f"Labelled words to probe (the paper: 10,000). At most {limits.MAX_PROBE_TOKENS} here "
    "(ECCO_MAX_PROBE_TOKENS). 67% train, 33% test.",
)
trials = right.slider("Trials", 1, 10, key="probe_trials", on_change=mark_custom,
                      help="Each with its own split and control task.")
epochs = right.number_input("Epochs", min_value=1, max_value=200, key="probe_epochs", on_change=mark_custom)
rate = right.selectbox("Adam learning rate", list(LEARNING_RATES), format_func=RATE_NAMES.get, key="probe_lr",
                       on_change=mark_custom)
# A row of its own, its chips wrapped: every layer of the paper's protocol in view, none cut off.
chosen_layers = st.multiselect("Layers", layer_choices, format_func=layer_name, key="probe_layers",
                               on_change=mark_custom, wrap=True,
                               help="The embeddings, and blocks (each block's output and its FFN).")

library_layers = [layer if layer == EMBEDDINGS else int(layer) for layer in chosen_layers]
if source == "upload":
    corpus = upload.getvalue() if upload is not None else None
    corpus_key = hashlib.sha256(corpus).hexdigest() if corpus is not None else None
else:
    corpus, corpus_key = str(probing.UD_ENGLISH_EWT_DEV), BUNDLED
estimate = estimates.probing_seconds(lm, corpus, n_tokens=int(n_tokens), trials=int(trials), epochs=int(epochs),
                                     lr=LEARNING_RATES[rate], layers=library_layers, store="disk")
run_settings = (lm.name, corpus_key, int(n_tokens), tuple(chosen_layers), int(trials), int(epochs), rate)

# A copied link of a run opens with that run (bundled data only: an upload is not in the link).
showing = dashboard.run_button("Run probes", key="probe_run", settings=run_settings, estimate_s=estimate,
                               flag="probe_ran", linkable=source == BUNDLED)
if not showing:
    st.info(f"Choose the data and settings, then press Run probes. Model: {dashboard.literal(lm.name)} "
            f"({lm.n_layers} blocks).")
    st.stop()



def check_data() -> None:
    if corpus is None:
        raise ValueError("upload a .conllu file, or pick the bundled data")
    if not chosen_layers:
        raise ValueError("Layers is empty: pick the embeddings or a block to probe")


result, area = dashboard.analysis(
    "Training the probes",
    # The server's sessions share its memory: the disk store halves a run's peak at the same speed
    # (the quick preset: 251 MB above the model instead of 521 MB, same accuracies to 0.001).
    lambda progress: ec.probe_table(lm, corpus, n_tokens=int(n_tokens), trials=int(trials), epochs=int(epochs),
                                    lr=LEARNING_RATES[rate], layers=library_layers, store="disk", progress=progress),
    key="probe", settings=run_settings, estimate=lambda: estimate, check=check_data,
)

with area:
    st.subheader(f"Table 1 for {dashboard.literal(lm.name)}")
    if (coarse := probing.small_corpus_warning(result.n_tokens)) is not None:
        st.warning(f"Only {result.n_tokens} labelled tokens: {coarse}.")
    st.caption(
        f"Percent, mean ± standard deviation over {trials} trial{'s' if trials != 1 else ''}; "
        f"learning rate {result.lr:g}. "
        f"Always answering the most frequent tag scores {100 * result.majority_accuracy:.1f}%."
    )
    table = result.to_frame()
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
    dashboard.computed_on(lm)
    with st.expander("The paper's Table 1 (BERT-base, 12 blocks) for comparison"):
        st.markdown(probing.table1_markdown(probing.paper_table1()))
