"""Causal tracing: activation patching (Meng et al. 2022, Figure 1) beside its gradient approximation."""

import contextlib

import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import estimates, patching, plots
from ecco_core.tokens import prompt_tokens
from ecco_core.plots import display_token

lm, _ = dashboard.page(
    "Causal tracing",
    "Run the model on a corrupted input, put back one activation from the clean run, and see how much of the "
    "clean answer returns: 0 = the corrupted run, 1 = the clean run (Meng et al. 2022; Heimersheim & Nanda 2024). "
    "This view has its own prompts; the sidebar picks the model.",
    needs_capture=False,
)
dashboard.require_head(lm, "causal tracing to restore")

EXAMPLES = {
    "names": {
        "trace_clean": "When Mary and John went to the store, John gave a drink to",
        "trace_corruption": "prompt",
        "trace_corrupted": "When Mary and John went to the store, Mary gave a drink to",
        "trace_noise": [],
        "trace_answer": "Mary",
        "trace_foil": "John",
    },
    "fact": {
        "trace_clean": "The Eiffel Tower is located in the city of",
        "trace_corruption": "noise",
        "trace_corrupted": "",
        "trace_noise": ["0", "1", "2", "3"],
        "trace_answer": "Paris",
        "trace_foil": "",
    },
}
EXAMPLE_LABELS = {
    "names": "Names: who gets the drink? (a name swapped)",
    "fact": "Fact: where is the Eiffel Tower? (noise on the subject)",
}
CORRUPTIONS = {"prompt": "Another prompt of the same length", "noise": "Noise on chosen tokens (Meng et al.)"}
METHODS = {"exact": "Exact (activation patching)", "approximate": "Approximate (attribution patching)"}
METRIC_CHOICES = ["default", *patching.METRICS]
#: Most noise draws the page averages, and how many draws of a pinned cell show its spread.
MAX_SAMPLES = 20
SPREAD_DRAWS = 10


def exact_seconds(lm, settings: tuple) -> float:
    """Estimated seconds of exact patching; sizing it runs the clean and corrupted prompts, so once per settings
    (the size is kept, not the seconds: those follow the pace the estimates measure)."""
    _, clean, corruption, answer, foil, _, _ = settings
    runs, positions = dashboard.cached_analysis(  # every draw
        lambda: patching.work(lm, clean, corruption, answer, foil), key="trace_work", settings=settings)
    return estimates.patching_seconds(lm, runs, positions)


def traced(lm, settings: tuple, approximate: bool, check=None, beside: bool = False):
    """``ec.patch`` for the page's settings: ``(result, area)`` from :func:`dashboard.analysis` (its check, beside)."""
    _, clean, corruption, answer, foil, metric, window = settings
    return dashboard.analysis(
        "Attribution patching" if approximate else "Activation patching",
        lambda progress: ec.patch(lm, clean, corruption, answer, foil, metric=metric, window=window,
                                  approximate=approximate, progress=progress),
        key="trace_approximate" if approximate else "trace_exact", settings=(*settings, approximate),
        # Attribution patching is one forward and one backward pass: no estimate needed.
        estimate=lambda: 0.0 if approximate else exact_seconds(lm, settings), check=check, beside=beside,
        # One backward pass holds the whole model's graph: +838 MiB for a 512-token prompt, which beside another
        # large run took the server past its 3 GB (bench/memory.py calls).
        alone=approximate,
    )


defaults = dashboard.example_picker("trace_example", EXAMPLES, EXAMPLE_LABELS)
left, right = st.columns(2)
with left:
    dashboard.page_param("trace_clean", defaults["trace_clean"])
    clean = st.text_input("Clean prompt (the model gives the answer)", key="trace_clean")
    dashboard.page_param("trace_corruption", "prompt", choices=CORRUPTIONS)
    corruption_kind = st.radio("Corruption", list(CORRUPTIONS), format_func=CORRUPTIONS.get, key="trace_corruption",
                               horizontal=True)
    if corruption_kind == "prompt":
        dashboard.page_param("trace_corrupted", defaults["trace_corrupted"])
        corrupted = st.text_input("Corrupted prompt (same number of tokens)", key="trace_corrupted")
        corruption = corrupted  # ec.patch's corrupted: a prompt, or ec.Noise below
    else:
        clean_tokens = ()
        if clean.strip():
            with contextlib.suppress(ValueError):  # a prompt over the limit is refused below, with the others
                dashboard.checked_prompt(lm, clean)
                clean_tokens = prompt_tokens(lm, clean)  # the positions ec.Noise counts
        options = [str(position) for position in range(len(clean_tokens))]
        dashboard.page_param("trace_noise", [])
        st.session_state["trace_noise"] = [p for p in st.session_state["trace_noise"] if p in options]
        noised = st.multiselect(
            "Tokens to corrupt", options, key="trace_noise", wrap=True,
            format_func=lambda p: f"{p}: {display_token(clean_tokens[int(p)])}",
        )
        scale_column, seed_column, samples_column = st.columns(3)
        dashboard.page_param("trace_scale", 3.0)
        scale = scale_column.number_input("Noise (x the embeddings' std)", 0.1, 20.0, step=0.5, key="trace_scale")
        dashboard.page_param("trace_seed", 0)
        seed = seed_column.number_input("Seed", 0, 2**31 - 1, step=1, key="trace_seed")
        dashboard.page_param("trace_samples", 1)
        samples = samples_column.number_input(
            "Noise draws averaged", 1, MAX_SAMPLES, step=1, key="trace_samples",
            help="Meng et al. average 10 draws; each costs a whole run. Pin a cell to see how much one draw can "
            f"differ from the next ({SPREAD_DRAWS} draws of that cell alone).")
        corruption = ec.Noise(tuple(int(p) for p in noised), float(scale), int(seed), int(samples)) if noised else None
with right:
    answer_column, foil_column = st.columns(2)
    dashboard.page_param("trace_answer", defaults["trace_answer"])
    answer = answer_column.text_input("Answer", key="trace_answer", help="Read as it follows the prompt: Mary → ' Mary'.")
    dashboard.page_param("trace_foil", defaults["trace_foil"])
    foil = foil_column.text_input("Foil (optional)", key="trace_foil", help="With a foil the metric is the logit "
                                  "difference answer - foil.")
    dashboard.page_param("trace_metric", "default", choices=METRIC_CHOICES)
    metric = st.selectbox(  # a row of its own: its choices are long
        "Metric", METRIC_CHOICES, key="trace_metric",
        format_func=lambda name: patching.default_metric_label() if name == "default"
        else patching.METRICS[name].description,
    )
    method_column, window_column = st.columns(2)
    dashboard.page_param("trace_method", "exact", choices=METHODS)
    method = method_column.radio("Method", list(METHODS), format_func=METHODS.get, key="trace_method")
    dashboard.page_param("trace_window", 1)
    window = window_column.slider("Blocks restored together", 1, 10, key="trace_window",
                                  help="ROME restores 10 FFN or attention outputs around each block.")
    dashboard.page_param("trace_compare", True)
    compare = st.toggle("Compare exact and approximate", key="trace_compare")

if corruption is None:
    st.info("Pick the tokens to corrupt (the subject, in Meng et al.'s experiments).")
    st.stop()


def check_controls() -> None:
    """The page's inputs checked in the words of its controls, before any work (the library says it in its own)."""
    prompts = {"Clean prompt": clean} | ({"Corrupted prompt": corruption} if isinstance(corruption, str) else {})
    for label, text in prompts.items():
        if not text.strip():
            raise ValueError(f"{label} is empty; type the prompt to trace")
        dashboard.checked_prompt(lm, text, label)
    if not answer.strip():
        raise ValueError("The answer is empty; type the word the clean prompt leads to, e.g. Mary")
    if metric != "default" and patching.METRICS[metric].needs_foil and not foil.strip():
        raise ValueError(f"The metric '{patching.METRICS[metric].description}' needs a foil: type one, or pick "
                         "another metric")
    if method == "approximate" and window != 1:
        raise ValueError(f"{METHODS['approximate']} estimates one block at a time: set Blocks restored together to 1 "
                         f"(it is {window}), or pick {METHODS['exact']}")


settings = (lm.name, clean, corruption, answer, foil if foil.strip() else None, None if metric == "default" else metric, int(window))
# The results go in the area of the work: new work's progress takes the place of every earlier chart at once.
result, area = traced(lm, settings, method == "approximate", check=check_controls)

pinned = None
dashboard.page_param("trace_pinned", "")  # "site,position,block"; in the URL too, so a link opens the same pin
with contextlib.suppress(ValueError):
    site, position, layer = st.session_state["trace_pinned"].split(",")
    if site in result.sites and 0 <= int(position) < result.n_tokens and 0 <= int(layer) < result.n_layers:
        pinned = site, int(position), int(layer)


def draws_of_cell(result, index: int, site: str, position: int, layer: int) -> None:
    """The pinned cell's effect under several noise draws alone, so that a lucky draw shows as one."""
    if result.draw_effects is not None:
        spread, first = result.draw_effects[:, index, layer, position], corruption.seed
    else:
        spread = dashboard.quick_analysis(
            f"Drawing the noise {SPREAD_DRAWS} times…",
            lambda: patching.draw_effects(lm, clean, corruption, answer, foil or None, site=site, layer=layer,
                                          position=position, draws=SPREAD_DRAWS, metric=settings[5],
                                          window=int(window)),
            key="trace_draws", settings=(settings, pinned), beside=True)
        if spread is None:
            return
        first = corruption.seed
    shown = result.effects[index, layer, position]
    averaged = (f"the average of these {len(spread)} draws" if result.draw_effects is not None
                else f"seed {corruption.seed} alone")
    st.caption(
        f"Under {len(spread)} noise draws (seeds {first} to {first + len(spread) - 1}), each alone, this cell's "
        f"effect is {spread.mean():.3f} ± {spread.std(ddof=1):.3f}, from {spread.min():.3f} to {spread.max():.3f}; "
        f"the map shows {shown:.3f} ({averaged})."
        + (" One draw is not enough here: average more."
           if spread.std(ddof=1) > 0.1 and corruption.samples == 1 else "")
    )


def predictions(pairs) -> str:
    return ", ".join(f"{display_token(token)!r} {probability:.2f}" for token, probability in pairs[:3])


with area:
    dashboard.computed_on(lm)
    for note in result.notes:
        st.caption(f"ℹ️ {dashboard.literal(note)}")
    st.markdown(
        f"**{result.method.capitalize()}** of {dashboard.literal(result.corruption)}; metric: "
        f"{patching.METRICS[result.metric].description}: clean **{result.clean_value:.3f}**, corrupted "
        f"**{result.corrupted_value:.3f}**."
    )
    st.caption(f"Clean run predicts {dashboard.literal(predictions(result.clean_top))}; corrupted run "
               f"{dashboard.literal(predictions(result.corrupted_top))}. Hover a cell for the patched run's top "
               "predictions; click one to pin it.")
    for site in result.sites:
        figure = plots.patching_heatmap(result, site, pinned=pinned[1:] if pinned and pinned[0] == site else None)
        pin = dashboard.on_cell_click(
            f"trace_{site}", lambda cell, site=site: {"trace_pinned": f"{site},{cell[0]},{cell[1]}"})
        st.plotly_chart(figure, selection_mode="points", key=f"trace_{site}", width="stretch", on_select=pin)

    if pinned is not None:
        site, position, layer = pinned
        index = result.sites.index(site)
        st.markdown(
            f"**Pinned:** restore {result.restored_label(site, layer)} at {position} "
            f"{dashboard.literal(repr(display_token(result.tokens[position])))}: effect "
            f"**{result.effects[index, layer, position]:.3f}** ({result.metric} "
            f"{result.values[index, layer, position]:.3f})"
        )
        if result.top_ids.shape[-1]:
            st.dataframe(result.predictions_frame(site, position, layer), hide_index=True)
        if isinstance(corruption, ec.Noise) and (result.draw_effects is not None or not result.approximate):
            draws_of_cell(result, index, site, position, layer)

    dashboard.download_buttons(result.to_frame(), "causal-tracing", plots.patching_figure(result))

    if compare:
        st.subheader("Exact and approximate")
        if window != 1:
            st.caption("Attribution patching estimates one block at a time: set the blocks restored together to 1 "
                       "to compare.")
        else:
            other, other_area = traced(lm, settings, method != "approximate", beside=True)
            if other is not None:
                with other_area:
                    exact, approximate = (other, result) if result.approximate else (result, other)
                    agreement = ec.trust.patching_agreement(exact, approximate)
                    table = agreement.to_frame()
                    st.caption(
                        "Attribution patching (Nanda 2023; Syed et al. 2023) estimates every cell from one backward "
                        f"pass: Pearson r with the exact effects is {table['pearson'].iloc[-1]:.3f} over all "
                        "cells. It is a first-order estimate; it errs most where a patch moves the output a long way."
                    )
                    scatter = plots.patching_scatter(exact, approximate)
                    view, trust = st.columns([3, 2])
                    view.plotly_chart(scatter, key="trace_scatter", width="stretch")
                    # Beside the scatter: per site, how well the estimate ranks and finds the exact top cells.
                    trust.dataframe(
                        table[["site", "pearson", "spearman", "recall_at_top"]],
                        hide_index=True, width="stretch",
                        column_config={
                            "pearson": st.column_config.NumberColumn("Pearson r", format="%.2f"),
                            "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.2f"),
                            "recall_at_top": st.column_config.NumberColumn(
                                f"top-{agreement.top} recall", format="%.1f",
                                help=f"Share of the exact top {agreement.top} cells (by |effect|) among the "
                                f"approximate top {agreement.top}: AtP*'s measure of cells it would miss"),
                        },
                    )
                    trust.caption(
                        f"How far to trust the estimate, per site: its correlation with the exact effects and the "
                        f"share of the exact top {agreement.top} cells it also ranks in its top {agreement.top} "
                        "(Kramár et al. 2024, AtP*)."
                    )
                    dashboard.download_buttons(table, "causal-tracing-agreement", scatter)
