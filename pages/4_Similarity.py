"""Figure 6: how similar are the representations of every layer (CCA, SVCCA, PWCCA, CKA)."""

import numpy as np
import streamlit as st

import dashboard
import ecco_core as ec
from dashboard import settings as limits
from ecco_core import estimates, plots
from ecco_core.plots import trust as trust_plots
from ecco_core import similarity as sim
from ecco_core.layers import representation_widths
from ecco_core.tokens import encode_prompt

SOURCES = {
    "capture": "The current capture",
    "ud": "UD English EWT dev sentences",
    "pasted": "Pasted text (one text per line)",
}

#: Shuffles of the permutation baseline beside the matrix (the library's default).
N_PERMUTATIONS = 100

lm, cap = dashboard.page(
    "Representation similarity",
    "The paper's Figure 6: the hidden states (the embeddings, then each block's output) against each block's "
    "FFN activations, scored from 0 "
    "(unrelated) to 1 (one is a linear transformation of the other). Token positions are the samples. CKA works "
    "on one prompt; the CCA family needs many more tokens than dimensions, so pool sentences for it.",
    tab="Similarity · Ecco Explorer",
)


def use_cka() -> None:
    st.session_state["similarity_method"] = "cka"


# Every setting lives in the URL too, so a copied link reopens this exact view.
dashboard.page_param("similarity_source", "capture", choices=SOURCES)
dashboard.page_param("similarity_method", "cka", choices=sim.METHODS)
dashboard.page_param("similarity_kernel", "linear", choices=sim.KERNELS)
dashboard.page_param("similarity_keep", 0.99)
dashboard.page_param("similarity_rows", "hidden", choices=sim.REPRESENTATIONS)
dashboard.page_param("similarity_columns", "ffn", choices=sim.REPRESENTATIONS)
dashboard.page_param("similarity_skip_special", True)
dashboard.page_param("similarity_skip_first", lm.is_causal)
left, middle, right = st.columns([2, 2, 3])
source = left.radio("Token positions from", list(SOURCES), format_func=SOURCES.get, key="similarity_source")
method = middle.selectbox(  # shown as the charts and messages name them (CKA, PWCCA); the URL keeps the key
    "Method", list(sim.METHODS), format_func=str.upper, key="similarity_method",
    help="\n".join(f"- {name.upper()}: {entry.description}" for name, entry in sim.METHODS.items()),
)
kernel, keep = "linear", 0.99
reads = sim.METHODS[method].options  # the options the method reads: their controls show for it alone
if "kernel" in reads:
    kernel = middle.radio("Kernel", list(sim.KERNELS), key="similarity_kernel", horizontal=True,
                          help="RBF bandwidth: the median distance between tokens.")
if "keep" in reads:
    keep = middle.slider("Variance kept", 0.5, 1.0, step=0.01, key="similarity_keep")
options = {name: value for name, value in {"kernel": kernel, "keep": keep}.items() if name in reads}
rows = right.selectbox("Rows", list(sim.REPRESENTATIONS), format_func=sim.REPRESENTATION_TITLES.get,
                       key="similarity_rows", help=sim.REPRESENTATIONS["hidden"])
columns = right.selectbox("Columns", list(sim.REPRESENTATIONS), format_func=sim.REPRESENTATION_TITLES.get,
                          key="similarity_columns", help=sim.REPRESENTATIONS["ffn"])
row_widths, column_widths = representation_widths(lm, rows), representation_widths(lm, columns)
skip_special = right.checkbox("Leave out special tokens (BOS, [CLS], [SEP])", key="similarity_skip_special")
skip_first = right.checkbox(
    "Leave out each text's first token (attention sink)", key="similarity_skip_first",
    help="Causal models park hidden states tens to hundreds of times larger than any other token's on the first "
    "token. That one position then decides every score: linear CKA reads nearly 1.00 between most blocks.",
)

texts = None
with dashboard.user_errors():
    if source == "ud":
        dashboard.page_param("similarity_n_sentences", 40)
        n_sentences = left.number_input("Sentences", 2, 200, key="similarity_n_sentences",
                                        help="The first sentences of UD English EWT dev (CC BY-SA 4.0).")
        chosen = sim.ud_sentences(int(n_sentences))
    elif source == "pasted":
        dashboard.page_param("similarity_pasted", "")
        pasted = left.text_area("Texts", key="similarity_pasted", height=150,
                                help=f"One text per line, at most {limits.MAX_SIMILARITY_TOKENS} tokens together "
                                "(ECCO_MAX_SIMILARITY_TOKENS).")
        limits.check_text_length(pasted, "MAX_SIMILARITY_TOKENS", "The pasted text")
        chosen = [line for line in pasted.splitlines() if line.strip()]
        if not chosen:
            st.info("Paste one or more texts, one per line.")
            st.stop()
    if source != "capture":
        lengths = [len(encode_prompt(lm, text)) for text in chosen]
        longest = max(range(len(chosen)), key=lengths.__getitem__)
        if lengths[longest] > lm.context_length:  # said here in the page's words, not as corpus_similarity's texts[i]
            raise ValueError(f"Line {longest + 1} of the texts is {lengths[longest]} tokens long, more than this "
                             f"model reads at once ({lm.context_length}): split it over several lines.")
        limits.enforce(sum(lengths), "MAX_SIMILARITY_TOKENS", "The texts' length")
        texts = chosen
if source != "capture" and texts is None:
    st.stop()  # the error is on the page

def seconds(over) -> float:
    """Estimated seconds of this page's comparison over ``over`` (the capture, or texts)."""
    return estimates.compare_layers_seconds(lm, over, method, rows=rows, columns=columns, kernel=kernel, keep=keep,
                                            skip_special=skip_special, skip_first=skip_first)


def use_sentences(count: int) -> None:
    st.session_state.update(similarity_source="ud", similarity_n_sentences=count)


if texts is None:
    pooled = dashboard.capture_key(cap)
else:
    pooled = (cap.model_name, tuple(texts))
source = cap if texts is None else texts  # what the library compares: the capture's tokens, or the texts pooled
# Over texts through nnsight (NDIF) the layers stay where the model runs: the matrix, its median cell and that cell's
# chance level come back from one request, computed there.
served = texts is not None and lm.backend.traced
# Weighed on the positions compared: special and first tokens left out are no samples.
compared = sim.positions_compared(lm, source, skip_special=skip_special, skip_first=skip_first)
verdict = sim.saturation(max(2, compared), row_widths, column_widths, method, keep)
if verdict is not None and verdict.forced:
    # Said before the run: with these positions the matrix is 1 everywhere whatever the activations.
    needed = sim.ud_sentences_for(lm, verdict.needed_positions, skip_special=skip_special,
                                  skip_first=skip_first, most=200)
    cost = dashboard.duration(seconds(sim.ud_sentences(needed))) if needed else None
    proposal = (f" The smallest setting that can: {needed} UD sentences ({cost} {dashboard.estimated_where()})."
                if needed else " Even 200 UD sentences are too few here: use CKA.")
    st.warning(verdict.describe() + proposal)
    if needed:
        st.button(f"Use {needed} UD sentences", on_click=use_sentences, args=(needed,), key="similarity_use_sentences")


def compare(progress):
    """(the matrix, and where the server tested it: (the median cell, its baseline), else None)."""
    if served:
        matrix, cell, baseline = ec.trust.similarity_with_baseline(
            lm, texts, method, n_permutations=N_PERMUTATIONS, rows=rows, columns=columns, kernel=kernel, keep=keep,
            skip_special=skip_special, skip_first=skip_first, progress=progress)
        return matrix, (cell, baseline)
    # Texts keep their layers in the on-disk store, read back one layer at a time, whatever their length: in memory,
    # 40 UD sentences peaked at +632 MiB (+369 MiB on disk) and the library keeps up to 1 GiB of layers there, a run
    # that two sessions at once would take past the server's 3 GiB (bench/memory.py calls).
    on_disk = {} if texts is None else {"store": "disk"}
    return sim.compare_layers(lm, source, method, rows=rows, columns=columns, kernel=kernel, keep=keep,
                              skip_special=skip_special, skip_first=skip_first, progress=progress, **on_disk), None


def chance(result, cell, tested):
    """The permutation baseline of ``cell`` (row, column), or of the matrix's median cell before a click (``tested``:
    the server's, when it came with the matrix), else drawn here: (baseline or None when stopped, the cell)."""
    typical = cell is None
    if typical and tested is not None:
        (cell, baseline), area = tested, st.container()
    else:
        cell = sim.median_cell(result.values) if typical else cell
        baseline, area = dashboard.analysis(
            "Shuffling token positions", lambda progress: ec.trust.cell_baseline(
                lm, source, *cell, method, rows=rows, columns=columns, skip_special=skip_special, skip_first=skip_first,
                n_permutations=N_PERMUTATIONS, progress=progress, **options),
            key="similarity_baseline",
            settings=(pooled, method, kernel, keep, rows, columns, skip_special, skip_first, cell),
            estimate=lambda: estimates.cell_baseline_seconds(
                lm, source, *cell, method, rows=rows, columns=columns, skip_special=skip_special,
                skip_first=skip_first, n_permutations=N_PERMUTATIONS, **options),
            beside=True,
        )
        if baseline is None:
            return None, cell
    row, column = cell
    pair = f"{result.row_labels[row]} vs {result.column_labels[column]}"
    with area:
        st.plotly_chart(trust_plots.permutation_figure(baseline, title=f"Chance: {pair}"),
                        key="similarity_chance", width="stretch")
        st.caption(dashboard.literal(
            ("The median cell, " if typical else "") + f"{pair}: {baseline.score:.2f}; with one side's token "
            f"positions shuffled ({len(baseline.null)} times) {baseline.null_mean:.2f} ± {baseline.null_std:.2f}, "
            f"at most {baseline.null.max():.2f}; p = {baseline.p_value:.2g}. "
            + ("Click a cell to test it." if typical else "")
        ))
    return baseline, cell


def estimated() -> float:
    """Seconds of the comparison, and over texts through nnsight of the median cell's chance level with it."""
    if not served:
        return seconds(source)
    return seconds(source) + estimates.cell_baseline_seconds(
        lm, source, 0, 0, method, rows=rows, columns=columns, skip_special=skip_special, skip_first=skip_first,
        n_permutations=N_PERMUTATIONS, **options)


compared, area = dashboard.analysis(
    "Comparing every pair of layers", compare, key="similarity",
    settings=(pooled, method, kernel, keep, rows, columns, skip_special, skip_first),
    estimate=estimated,
)
result, tested = compared

with area:
    dashboard.computed_on(lm, analysed_here=not served)
    if result.saturated:
        st.warning(
            f"Every {result.label} value is 1.00, so there is no matrix to read. This is arithmetic, not a finding: "
            f"{result.n_samples} token positions against up to {result.max_dimensions} dimensions per layer, and once "
            "two layers' subspaces together span every position, each canonical correlation is exactly 1. "
            "CKA compares a single prompt meaningfully; the CCA family needs several times more positions than "
            "dimensions (pool UD sentences)."
        )
        st.button("Show CKA instead", on_click=use_cka, type="primary", key="similarity_use_cka")
        st.stop()
    if result.warning:
        st.warning(result.warning)
    if skip_first and lm.is_causal:
        st.caption("Each text's first token is left out: this causal model makes it an attention sink, hidden "
                   "states far larger than any other token's, and with it in, that one position pushes most "
                   "scores towards 1.")
    figure = plots.similarity_heatmap(result)
    view, trust = st.columns([2, 1])
    event = view.plotly_chart(figure, key="similarity_heatmap", on_select="rerun", selection_mode="points")
    cell = dashboard.clicked_cell(event)
    if cell is None:
        view.caption("Click a cell to read that pair of layers.")
    else:
        view.markdown(dashboard.literal(result.describe(*cell)))
    frame = result.to_frame()
    with trust:
        baseline, cell = chance(result, cell, tested)
    if baseline is not None:
        frame = baseline.beside(frame, row_index=cell[0], column_index=cell[1])
    dashboard.download_buttons(frame, f"similarity-{method}-{rows}-{columns}", figure)
