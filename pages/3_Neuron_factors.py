"""Neuron factors: FFN activations decomposed into a few factors (the Ecco paper's Figures 9 and 10)."""


import numpy as np
import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import estimates, plots
from ecco_core.factors import METHODS, NEGATIVES
from ecco_core.layers import site_label

METHOD_NAMES = {name: entry.label or name.upper() for name, entry in METHODS.items()}
MAX_FACTORS = 30
SEEDS = (0, 1)  # of the factors' stability: one refit per method keeps it within 3x the view (bench/trust.py)
ALL_TOKENS = -1  # "Rank the FFN's neurons on" every token (their peak), a real option: None would show a placeholder


lm, cap = dashboard.page(
    "Neuron factors",
    "The FFN neurons of the chosen blocks (stacked side by side) over every token, decomposed into a few "
    "factors: groups of neurons that fire together. Each token takes the colour of its strongest factor, "
    "deeper where that factor is nearer its peak; each sparkline is one factor along the text. Hover a "
    "sparkline to see that factor alone on the text, click it to keep it and select it below. For a longer "
    "passage, paste it as the sidebar prompt with **Max new tokens** 0.",
)

controls = st.columns([2, 1, 3, 2])
# Every setting lives in the URL too, so a copied link reopens this exact view.
dashboard.page_param("factors_method", "nmf", choices=METHODS)
dashboard.page_param("factors_negatives", "clip", choices=NEGATIVES)
method = controls[0].selectbox("Method", list(METHODS), format_func=METHOD_NAMES.get, key="factors_method")
negatives = controls[0].selectbox(
    "NMF: negative activations", list(NEGATIVES), key="factors_negatives",
    disabled=not ec.factors.fits_non_negative(method),
    format_func={"clip": "clip to 0 (as Ecco)", "split": "split into +/- columns"}.get,
    help="Gated FFNs (Llama, SmolLM2) are as negative as positive: clipping drops that half, "
    "splitting keeps it as a second non-negative column per neuron.",
)
# Every block of a new model.
dashboard.page_param("factors_layers", (0, cap.n_layers - 1), choices=range(cap.n_layers), source=cap.n_layers)
first, last = controls[2].slider("Blocks (their FFN neurons)", 0, cap.n_layers - 1, key="factors_layers")
dashboard.page_param("factors_skip_special", True)
skip_special = controls[3].checkbox("Skip special tokens", key="factors_skip_special",
                                    help="BOS, [CLS] and [SEP] often fire far above every other token.")
dashboard.page_param("factors_skip_first", cap.causal)
skip_first = controls[3].checkbox(
    "Skip the first token", key="factors_skip_first",
    help="Causal models park a few activations tens of times larger than any other token's on the first "
    "token (an attention sink); left in, it takes a factor of its own and dwarfs the rest.",
)

positions = tuple(ec.factors.analysed_positions(cap, skip_special=skip_special, skip_first=skip_first))
layer_range = range(first, last + 1)
negatives = negatives if ec.factors.fits_non_negative(method) else "clip"
_, n_neurons = ec.factors.matrix_shape(cap, method, layers=layer_range, negatives=negatives)  # split: twice as many
# The box offers what this text allows, and starts from what suits it: 10, fewer on a short text.
most = max(1, min(MAX_FACTORS, ec.factors.max_components(len(positions), n_neurons)))
usual = ec.factors.default_components(len(positions))
dashboard.page_param("factors_n", usual, choices=range(1, most + 1))
n_components = controls[1].number_input(
    "Factors", min_value=1, max_value=most, key="factors_n",
    help=f"1 to {most} on these {len(positions)} tokens. By default {ec.factors.DEFAULT_COMPONENTS}, or half the "
    "tokens on a shorter text, so that each factor groups tokens rather than taking one of its own.",
)
if len(positions) < 2:
    st.error(f"Only {len(positions)} token is left to factor: untick **Skip special tokens** or **Skip the first "
             "token**, or give a longer prompt in the sidebar.")
    st.stop()
if usual < ec.factors.DEFAULT_COMPONENTS and n_components == usual:
    st.caption(f"{usual} factors by default on this short text: half of its {len(positions)} analysed tokens "
               f"(at most {ec.factors.DEFAULT_COMPONENTS}), so that each factor groups tokens.")

def pin(clicked: int) -> None:
    """A click on a factor's sparkline selects that factor below (the view's callback)."""
    st.session_state["factors_pick"] = clicked


def factor_quality(result):
    """How far to trust the factors, on demand: every method's FVU and stability over SEEDS, beside the view."""
    dashboard.page_param("factors_quality", False)
    if not st.toggle("How far to trust the factors", key="factors_quality",
                     help=f"Refits NMF, PCA and ICA at seeds {', '.join(map(str, SEEDS))} on these tokens and "
                     "neurons (this view's own fit counts as one)."):
        st.caption(f"FVU of this {METHOD_NAMES[method]}: {1 - result.explained_variance:.2f}. Switch on to compare "
                   "the methods and see how much the factors move with the seed.")
        return None
    quality, area = dashboard.analysis(
        "Refitting every method at every seed",
        lambda progress: ec.trust.factor_quality(cap, seeds=SEEDS, fitted=result, progress=progress, **options),
        key="factors_quality_work",
        settings=(dashboard.capture_key(cap), int(n_components), method, first, last, positions, negatives),
        estimate=lambda: estimates.factor_quality_seconds(cap, seeds=SEEDS, fitted=result, **options), beside=True,
    )
    if quality is None:
        return None
    table = quality.to_frame()
    with area:
        st.dataframe(
            table.assign(method=table["method"].map(METHOD_NAMES))[["method", "fvu", "stability"]],
            hide_index=True, width="stretch",
            column_config={"fvu": st.column_config.NumberColumn("FVU", format="%.2f",
                                                                help="Fraction of variance unexplained"),
                           "stability": st.column_config.NumberColumn(f"stability ({len(SEEDS)} seeds)",
                                                                      format="%.2f")},
        )
        st.caption(
            "FVU: the share of the activations' variance over tokens the factors leave out (0 = all of it "
            "reproduced). Stability: mean |r| of each factor's token activations with its best match at another "
            "seed (Hungarian matching); 1 = the same factors. NMF's and PCA's seeds only change the random start "
            "of an SVD that comes out the same, so theirs is 1 by construction and says nothing; ICA's says how "
            "much its factors depend on the start."
        )
    return quality


options = dict(n_components=int(n_components), layers=layer_range, positions=list(positions), negatives=negatives)
result, area = dashboard.analysis(
    "Factoring the neuron activations",
    lambda progress: ec.factors(cap, method, progress=progress, **options),
    key="factors",
    settings=(dashboard.capture_key(cap), int(n_components), method, first, last, positions, negatives),
    estimate=lambda: estimates.factors_seconds(cap, method, **options),
)

with area:
    dashboard.computed_on(lm, analysed_here=result.fitted_on == "here")
    st.caption(
        f"{result.note} Reconstruction error {result.reconstruction_error:.3f} (relative), "
        f"{result.explained_variance:.1%} of the variance over tokens explained."
        + ("" if result.converged else " The solver stopped at its iteration limit.")
    )
    dashboard.factor_view(result, cap, key="factors_view", on_pin=pin)
    st.download_button("Factor view (HTML, works offline)", lambda: result.to_html(cap.tokens, cap.n_input),
                       "factor_view.html", "text/html", key="factors_view_html", on_click="ignore")

    result_settings = (dashboard.capture_key(cap), method, negatives, int(n_components), first, last, positions)
    picks, trust = st.columns([3, 2])
    dashboard.page_param("factors_pick", 0, choices=range(result.n_components), source=result_settings)
    factor = picks.radio("Neurons loading most on", range(result.n_components), format_func=lambda f: f"F{f}",
                         horizontal=True, key="factors_pick")
    top = result.top_neurons(10)
    picks.dataframe(top[top["factor"] == factor].drop(columns="factor"), hide_index=True, width="stretch")
    with trust:
        quality = factor_quality(result)

    st.markdown("**Download**: factor x token activations")
    dashboard.download_buttons(result.to_frame() if quality is None else quality.beside(result.to_frame(), method),
                               "factor_token_activations")
    st.download_button(
        f"Factor x neuron loadings (CSV, {result.n_neurons} neurons)",
        lambda: result.loadings_frame().to_csv(index=False), "factor_neuron_loadings.csv", "text/csv",
        key="factors_loadings_csv", on_click="ignore",
        help=None if result.fitted_on == "here" else (
            f"Fitted where the model ran, which sent back each factor's {ec.factors.SERVED_TOP_NEURONS} strongest "
            f"neurons only. This download asks it for every loading: the same fit made again there, about "
            f"{result.n_components * result.n_neurons * 4 / 2**20:.1f} MB back."),
    )

st.subheader("One neuron")
st.caption("Pick a neuron (by default the one loading most on the selected factor) and see its activation on "
           "every token; the table lists the most active neurons of its block's FFN.")
strongest = top[top["factor"] == factor].iloc[0]
# A new result (other blocks, method, factors) or factor starts from its own strongest neuron, not the last one shown.
dashboard.page_param("neuron_layer", int(strongest["block"]), choices=range(cap.n_layers),
                     source=(result_settings, factor))
dashboard.page_param("neuron_index", int(strongest["neuron"]), choices=range(cap.d_ff),
                     source=(result_settings, factor))
dashboard.page_param("neuron_rank_on", ALL_TOKENS, choices=range(ALL_TOKENS, cap.n_tokens),
                     source=dashboard.capture_key(cap))
pick = st.columns([1, 1, 2])
layer = pick[0].number_input("Block (its FFN)", 0, cap.n_layers - 1, key="neuron_layer")
neuron = pick[1].number_input("Neuron", 0, cap.d_ff - 1, key="neuron_index")
token_labels = plots.position_labels(cap.tokens)
rank_on = pick[2].selectbox("Rank the FFN's neurons on", range(ALL_TOKENS, cap.n_tokens),
                            format_func=lambda p: "all tokens (peak)" if p == ALL_TOKENS else token_labels[p],
                            key="neuron_rank_on")
with dashboard.user_errors():
    chosen = ec.neurons(cap, int(layer), ids=[int(neuron)])
    ranked = ec.neurons(cap, int(layer), top_k=10, position=None if rank_on == ALL_TOKENS else rank_on)
    activation = chosen.activations[0]
    st.plotly_chart(plots.token_bars(activation, cap.tokens, title=f"{site_label('ffn', layer)}, neuron {neuron}"),
                    key="neuron_bars")
    dashboard.show_tokens(cap, np.abs(activation))
    st.caption("Shading shows |activation|; the bars keep the sign (gated FFNs fire both ways).")
    st.dataframe(ranked.table(), hide_index=True, width="stretch")
    dashboard.download_buttons(ranked.to_frame(), f"block_{layer}_ffn_neurons")
