"""Circuits: which heads and FFNs write the answer, along which routes, checked by ablating them (#29)."""

import pandas as pd
import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import circuits, estimates, plots
from ecco_core.layers import head_label
from ecco_core.plots import circuits as circuit_plots
from ecco_core.plots import display_token

lm, _ = dashboard.page(
    "Circuits",
    "Which attention heads and FFNs write the answer, and along which routes the information flows. **Direct "
    "logit attribution** splits the answer's logit (minus the foil's) at the last token into what each part adds "
    "through the final norm, its scale frozen at this run's (Elhage et al. 2021); the **routes** split every "
    "residual sum of every block and token into its parts and keep the important ones (Ferrando & Voita 2024); "
    "**Verify by patching** ablates the parts and measures what they really carry. This view has its own "
    "prompts; the sidebar picks the model.",
    tab="Circuits · Ecco Explorer", needs_capture=False,
)

EXAMPLES = {
    "names": {
        "circuits_prompt": "When Mary and John went to the store, John gave a drink to",
        "circuits_answer": "Mary",
        "circuits_foil": "John",
        "circuits_ablation": "corrupted",
        "circuits_corrupted": "When Mary and John went to the store, Mary gave a drink to",
    },
    "fact": {
        "circuits_prompt": "The Eiffel Tower is located in the city of",
        "circuits_answer": "Paris",
        "circuits_foil": "",
        "circuits_ablation": "mean",
        "circuits_corrupted": "",
    },
}
EXAMPLE_LABELS = {
    "names": "Names (IOI): who gets the drink?",
    "fact": "Fact: where is the Eiffel Tower?",
}
ABLATIONS = {"mean": "Mean over the positions", "corrupted": "A corrupted prompt's run"}
#: The routes keep n_layers x n_heads x n_tokens**2 importances: 18 MB for the default model at this length.
ROUTES_MAX_TOKENS = 128
#: Why a part of the page runs on this machine only: a served model (NDIF) runs fused attention.
NEEDS_WEIGHTS = "it needs every head's attention weights, which NDIF's fused attention does not give"
served = lm.backend.traced  # DLA runs where the model is served; what needs attention weights runs here only


if not (lm.is_causal and lm.has_head):
    st.info(f"Circuits decompose a causal model's prediction; {dashboard.literal(lm.name)} has none. Pick a "
            "causal model (the default, SmolLM2) in the sidebar and press Run.")
    st.stop()

controls = st.columns([2.4, 3.6, 1, 1])
# A new example closes the head opened for the previous one.
defaults = dashboard.example_picker("circuits_example", EXAMPLES, EXAMPLE_LABELS, where=controls[0],
                                    also={"circuits_head": ""})
dashboard.page_param("circuits_prompt", defaults["circuits_prompt"])
prompt = controls[1].text_input("Prompt (read at its last token)", key="circuits_prompt")
dashboard.page_param("circuits_answer", defaults["circuits_answer"])
answer = controls[2].text_input("Answer", key="circuits_answer", help="Read as it follows the prompt: Mary → ' Mary'.")
dashboard.page_param("circuits_foil", defaults["circuits_foil"])
foil = controls[3].text_input("Foil (optional)", key="circuits_foil",
                              help="With a foil the value decomposed is the logit difference answer − foil.")


def check_prompt() -> list[int]:
    """The prompt's and answer's problems in the words of the page's controls; the prompt's token ids."""
    if not prompt.strip():
        raise ValueError("The prompt is empty; type the text whose next word is decomposed")
    if not answer.strip():
        raise ValueError("The answer is empty; type the word the prompt leads to, e.g. Mary")
    return dashboard.checked_prompt(lm, prompt, "The prompt")


def decomposed() -> tuple[ec.Circuits, pd.DataFrame]:
    """The circuits of the page's prompt (with routes while it is short enough) and what each part writes."""
    found = ec.circuits(lm, prompt, answer, foil or None,
                        routes=not served and len(check_prompt()) <= ROUTES_MAX_TOKENS)
    return found, circuits.top_tokens(lm, found, 5)


settings = (lm.name, prompt, answer, foil or None)
result, tops = dashboard.quick_analysis("Decomposing the logit…", decomposed, key="circuits", settings=settings,
                                        check=check_prompt)

for note in result.notes:
    st.caption(f"ℹ️ {dashboard.literal(note)}")
what = (f"logit difference {display_token(result.answer)!r} − {display_token(result.foil)!r}"
        if result.foil is not None else f"logit of {display_token(result.answer)!r}")
dla = dict(zip(result.components, result.component_values))
strongest = ", ".join(f"{part} ({dla[part]:+.2f})" for part in result.top(5))
st.markdown(
    f"The {dashboard.literal(what)} after {dashboard.literal(repr(display_token(result.tokens[-1])))} is "
    f"**{result.value:.2f}**. The parts that write most of it: {dashboard.literal(strongest)}."
)

# The opened head: "block,head" (in the URL too, so a link reopens it); a click on a cell sets it.
heads = {f"{block},{head}" for block in range(result.n_layers) for head in range(result.n_heads)}
picked = dashboard.page_param("circuits_head", "", choices=heads | {""})
opened = tuple(int(part) for part in picked.split(",")) if picked else None

dla_column, head_column = st.columns([3, 2])
with dla_column:
    st.subheader("Direct logit attribution")
    st.caption("Each head (columns) and FFN (right) of each block, in logits: blue raises the answer over the foil, "
               "red lowers it. Hover a cell for the tokens it pushes up and down"
               + (", and click a head to open it." if served else " and the tokens a head reads from; click a head "
                  "to open its attention."))
    heatmap = circuit_plots.dla_heatmap(result, tops, selected=opened)
    st.plotly_chart(
        heatmap, selection_mode="points", key="circuits_dla", width="stretch",
        on_select=dashboard.on_cell_click(
            "circuits_dla", lambda cell: {"circuits_head": f"{cell[0]},{cell[1]}"} if cell[1] < result.n_heads
            else {}),
    )
    frame = result.to_frame().merge(
        tops.assign(promoted=tops["promoted"].str.join(" | "), suppressed=tops["suppressed"].str.join(" | "))[
            ["part", "promoted", "suppressed"]], on="part", how="left")
    dashboard.download_buttons(frame, "circuits-dla", heatmap)
    dashboard.computed_on(lm)

with head_column:
    if opened is None:
        st.subheader("The strongest parts")
        st.caption("Click a head in the map to open it here.")
        strongest_parts = frame.dropna(subset=["rank"]).sort_values("rank").head(10)[["part", "value", "share"]]
        # Three tokens each, written as tables write them (a space as ␣, so a plain space parts them), in columns
        # whose widths add up to this column's at 1,400 px: no sideways scrolling.
        top_three = tops["promoted"].map(lambda tokens: " ".join(display_token(token, spaces=True)
                                                                 for token in tokens[:3]))
        st.dataframe(
            strongest_parts.merge(tops.assign(promoted=top_three)[["part", "promoted"]], on="part", how="left"),
            hide_index=True, column_config={
                "part": st.column_config.TextColumn(width=110),
                "value": st.column_config.NumberColumn(format="%.2f", width=55),
                "share": st.column_config.NumberColumn(format="percent", width=65),
                "promoted": st.column_config.TextColumn(
                    width=125, help="The three tokens whose logit the part raises most (␣ is a space); the CSV "
                    "holds five each way"),
            })
    else:
        block, head = opened
        label = head_label(block, head)
        st.subheader(label)
        value = result.heads[block, head]
        st.markdown(f"Writes **{value:+.3f}** logits ({value / result.value:.0%} of {result.value:.2f}).")
        if not dashboard.needs_this_machine(lm, "Its attention and what it reads from each token", NEEDS_WEIGHTS):
            attention_cap = dashboard.cached_capture(lm.name, prompt, 0, "")  # the prompt is checked above
            att = dashboard.quick_analysis("Reading its attention…",
                                           lambda: ec.attention(lm, attention_cap, "raw", layers=[block]),
                                           key="circuits_attention", settings=(lm.name, prompt, block), beside=True)
            if att is not None:
                read = result.read_position
                st.caption(f"Its attention from the read position {read} "
                           f"{dashboard.literal(repr(display_token(result.tokens[read])))} (shade = weight):")
                dashboard.show_tokens(attention_cap, att.map(block, head)[read], selected=read)
                st.plotly_chart(plots.attention_heatmap(att, block, head), key="circuits_attention_map",
                                width="stretch")
            st.plotly_chart(plots.token_bars(result.head_sources[block, head], result.tokens,
                                             title=f"What {label} writes, by source token", y_title="logits"),
                            key="circuits_head_sources", width="stretch")
        st.button("Close", key="circuits_close", on_click=st.session_state.update, args=({"circuits_head": ""},))

st.subheader("Information-flow routes")
if served:
    dashboard.needs_this_machine(lm, "The information-flow routes", NEEDS_WEIGHTS)
elif result.route_heads is None:
    st.info(f"The routes are drawn for prompts of at most {ROUTES_MAX_TOKENS} tokens; shorten the prompt to see them.")
else:
    st.caption(
        "Every residual stream of every block and token, and the parts that made it: each head's move from each "
        "source token, the stream kept, the FFN. A part's importance is its L1 proximity to the sum, "
        "max(0, ‖sum‖₁ − ‖sum − part‖₁), normalised (Ferrando & Voita 2024). The graph keeps the edges above the "
        "threshold, from the prediction (red, top right) back to the input tokens."
    )
    routes_view = circuit_plots.routes_html(result)
    st.html(routes_view, unsafe_allow_javascript=True)
    routes_frame = result.routes_frame(circuit_plots.ROUTES_FLOOR)
    dashboard.download_buttons(routes_frame, "circuits-routes", routes_view)

st.subheader("Verify by patching")
st.caption(
    "DLA is a direct effect; a part can also act through later blocks, or be undone by them. Here the top parts "
    "by DLA" + ("" if served else ", and by the routes graph (what each carries of it at the threshold 0.04),")
    + " are ablated (their output replaced at every position) in batched runs: the value with only them ablated, "
    "with only them kept, and, for every head and FFN alone, its exact effect beside its DLA."
)
verify_controls = st.columns([1, 2, 3])
dashboard.page_param("circuits_k", 10)
k = verify_controls[0].number_input("Top parts (k)", 1, len(result.components), step=1, key="circuits_k")
dashboard.page_param("circuits_ablation", defaults["circuits_ablation"], choices=ABLATIONS)
ablation = verify_controls[1].radio("Replace their output by", list(ABLATIONS), format_func=ABLATIONS.get,
                                    key="circuits_ablation", horizontal=True)
corrupted = None
if ablation == "corrupted":
    dashboard.page_param("circuits_corrupted", defaults["circuits_corrupted"])
    corrupted = verify_controls[2].text_input("Corrupted prompt (same number of tokens)", key="circuits_corrupted")
dashboard.page_param("circuits_exact", True)
exact = st.toggle(f"Exact effect of every part alone ({len(result.components)} more runs)", key="circuits_exact")

estimate = estimates.verify_seconds(lm, result, k=int(k), ablation=ablation, corrupted=corrupted, exact=exact)
verify_settings = (*settings, int(k), ablation, corrupted, exact)
# A copied link of a verification opens with it.
if not dashboard.run_button("Verify by patching", key="circuits_verify_button", settings=verify_settings,
                            estimate_s=estimate, flag="circuits_verify"):
    st.stop()


def check_verification() -> None:
    if ablation == "corrupted":
        if not corrupted.strip():
            raise ValueError("The corrupted prompt is empty; type one of the same number of tokens, or replace "
                             "the outputs by their mean")
        dashboard.checked_prompt(lm, corrupted, "The corrupted prompt")


checked, area = dashboard.analysis(
    "Ablating the parts",
    lambda progress: circuits.verify(lm, result, k=int(k), ablation=ablation, corrupted=corrupted, exact=exact,
                                     progress=progress),
    key="circuits_verify", settings=verify_settings, estimate=lambda: estimate, check=check_verification,
)


def verified_frame(checked) -> pd.DataFrame:
    """The result's table with the routes graph's ranking of the heads and FFNs beside DLA's (with routes)."""
    frame = checked.to_frame()
    if checked.route_checked:
        values = dict(zip(checked.components, checked.route_values(checked.route_threshold)))
        frame["route_value"] = frame["part"].map(values)
        order = [checked.components.index(part) for part in checked.route_top(len(checked.components),
                                                                              checked.route_threshold)]
        ranks = {checked.components[index]: rank for rank, index in enumerate(order, start=1)}
        frame["route_rank"] = pd.array(frame["part"].map(ranks), dtype="Int64")
    return frame


with area:
    rankings = {"DLA's": (checked.kept_share, checked.ablated_share, checked.recall)}
    if checked.route_checked:
        rankings[f"The routes graph's (threshold {checked.route_threshold:g})"] = (
            checked.route_kept_share, checked.route_ablated_share, checked.route_recall)
    st.markdown(
        f"Ablated with {dashboard.literal(checked.ablation)}: every head and FFN ablated, the value goes from "
        f"**{checked.value:.2f}** to **{checked.all_ablated_value:.2f}**."
    )
    exact_known = checked.exact_heads is not None
    st.dataframe(pd.DataFrame(
        [{"ranking": f"{name} top {checked.k}", "kept alone, share of the effect": kept,
          "ablated, share removed": removed, **({f"recall of the exact top {checked.k}": recall} if exact_known else {})}
         for name, (kept, removed, recall) in rankings.items()]),
        hide_index=True, column_config={column: st.column_config.NumberColumn(format="percent") for column in (
            "kept alone, share of the effect", "ablated, share removed", f"recall of the exact top {checked.k}")})
    table = verified_frame(checked)
    if exact_known:
        st.caption(f"Recall: the share of the {checked.k} parts whose own ablation moves the value most (the exact "
                   f"top {checked.k}) that a ranking's top {checked.k} finds.")
        scatter = circuit_plots.verify_scatter(checked)
        st.plotly_chart(scatter, key="circuits_verify_scatter", width="stretch")
        ranks = table.dropna(subset=["rank"])
        shown = ranks["rank"].le(checked.k) | ranks["exact_rank"].le(checked.k)
        if checked.route_checked:
            shown |= ranks["route_rank"].le(checked.k)
        columns = ["part", "value", "rank", *(["route_value", "route_rank"] if checked.route_checked else []),
                   "exact_effect", "exact_rank"]
        st.dataframe(ranks[shown].sort_values("exact_rank")[columns], hide_index=True)
        dashboard.download_buttons(table, "circuits-verified", scatter)
    else:
        dashboard.download_buttons(table, "circuits-verified")
    dashboard.computed_on(lm)
