"""Input saliency: which earlier tokens each generated token depends on (Ecco paper, Figures 3 and 4)."""

import streamlit as st

import dashboard
import ecco_core as ec
from ecco_core import estimates, plots

lm, cap = dashboard.page("Input saliency", tab="Saliency · Ecco Explorer")
# What this model can explain: the caption promises only that.
if lm.is_causal:
    explained = "Put a continuation in the sidebar's *Given answer* to explain that instead."
elif lm.has_head:
    explained = "This masked model explains its prediction at each [MASK] of the prompt: put one there."
else:
    explained = (f"{dashboard.literal(lm.name)} has no language-modelling head, so it predicts nothing to explain: "
                 "pick a causal model, or a masked one with its head, in the sidebar.")
st.caption(
    "For each generated token, how much each earlier token is responsible for it: the L2 norm of "
    "gradient x input embedding by default, each row scaled to 100%. All tokens come from one forward "
    "and one batched backward pass; the target is taken in float64. " + explained
)
dashboard.require_head(lm, "saliency to explain")


SHADINGS = {"share": "unsigned share", "signed": "signed: for vs against"}


def pin(clicked: int) -> None:
    """A click on a token of the text explains that token (the view's callback)."""
    st.session_state["saliency_token"] = clicked


columns = st.columns([2, 2, 2, 1])
# Each setting lives in the URL too, so a copied link reopens this exact view.
dashboard.page_param("saliency_method", "grad_x_input", choices=ec.SALIENCY_METHODS)
dashboard.page_param("saliency_target", "prob", choices=ec.SALIENCY_TARGETS)
dashboard.page_param("saliency_contrast", "")
dashboard.page_param("saliency_steps", 20)
method_labels = {name: entry.label or name for name, entry in ec.SALIENCY_METHODS.items()}  # the URL keeps the name
method = columns[0].selectbox(
    "Method", list(ec.SALIENCY_METHODS), format_func=method_labels.get, key="saliency_method", help="\n\n".join(
        f"**{method_labels[name]}**: {entry.description}" for name, entry in ec.SALIENCY_METHODS.items()
    ),
)
target = columns[1].selectbox(
    "Target", list(ec.SALIENCY_TARGETS), key="saliency_target",
    help="\n\n".join(f"**{name}**: {entry.description}" for name, entry in ec.SALIENCY_TARGETS.items()),
)
contrast = columns[2].text_input(
    "Contrast with (optional)", key="saliency_contrast",
    help="A foil token: explain target(token) - target(foil), e.g. why ' is' and not ' are'. "
    "With target 'logit' this is the contrastive explanation of Yin & Neubig (2022).",
)
steps = columns[3].number_input(  # "IG steps": named after the methods whose entries say they take steps
    " / ".join(method_labels[name] for name, entry in ec.SALIENCY_METHODS.items() if entry.uses_steps) + " steps",
    min_value=1, max_value=64, key="saliency_steps",
    disabled=not ec.SALIENCY_METHODS[method].uses_steps,
)

# Steps change integrated gradients only: the other methods share one result whatever the box says.
ig_steps = int(steps)  # what the faithfulness check's integrated gradients use, whichever method is shown
steps = ig_steps if ec.SALIENCY_METHODS[method].uses_steps else 1


def check_explainable() -> None:
    """What the sidebar and the method allow, in their words (not the library's cap= / answer=), before any request."""
    if lm.is_causal and not cap.n_generated:
        raise ValueError("Max new tokens is 0 and there is no Given answer, so no token was generated to explain: "
                         "set Max new tokens above 0, or type a Given answer, in the sidebar")
    if contrast.strip():  # in the words of the page's box, not the library's contrast_with=
        ec.tokens.one_token_word(lm, contrast.strip(), "Contrast with")
    if lm.backend.traced and method not in ec.saliency.TRACED_METHODS:
        raise ValueError(f"Method {method_labels[method]} runs on this machine only: on NDIF pick "
                         f"{' or '.join(map(method_labels.get, ec.saliency.TRACED_METHODS))} as the Method, or choose "
                         "Run on: this machine")


# Integrated gradients (and erasure, on a long text) take minutes on a shared CPU: announced with their
# estimate, shown in progress, stoppable; the results of earlier settings go as soon as new work starts.
sal, area = dashboard.analysis(
    f"Attributing with {method_labels[method]}" + (f", {steps} steps" if ec.SALIENCY_METHODS[method].uses_steps else ""),
    lambda progress: ec.saliency(lm, cap, method=method, target=target, contrast_with=contrast.strip() or None,
                                 steps=steps, progress=progress),
    key="saliency", settings=(dashboard.capture_key(cap), method, target, contrast.strip(), steps),
    estimate=lambda: estimates.saliency_seconds(lm, cap, method, steps=steps), check=check_explainable,
)

with area:
    dashboard.computed_on(lm)
    labels = {int(p): f"{p}: {plots.display_token(t)}" for p, t in zip(sal.positions, sal.explained_tokens)}
    dashboard.page_param("saliency_token", sal.first_word_position(), choices=labels)
    dashboard.page_param("saliency_shading", "share", choices=SHADINGS)
    choice, shading_column = st.columns([3, 2])
    position = choice.selectbox(
        "Explained token", list(labels), format_func=labels.get, key="saliency_token",
        help="Or click a token in the text, or a row of the heatmap below.",
    )
    shading = shading_column.radio(
        "Shading", list(SHADINGS), format_func=SHADINGS.get, key="saliency_shading", horizontal=True,
        disabled=sal.signed is None,
        help="Signed: each token's attribution with its direction (gradient \u00b7 embedding; IG summed over "
        "d_model; the drop, for erasure), on a diverging scale. With a contrast, blue is evidence for the token "
        "and red for the foil. A gradient's norm has no direction, so that method has shares only.",
    )
    signed = shading == "signed" and sal.signed is not None
    if shading == "signed" and not signed:
        shading_column.caption(f"{method_labels[method]} has no sign (a gradient's norm has no direction): "
                               "shown unsigned.")
    st.subheader("Text: hover a generated token to see what it depends on")
    dashboard.saliency_view(sal, position, signed=signed, key="saliency_view", on_pin=pin)
    st.caption(f"Attributed quantity for the pinned token: {dashboard.literal(sal.quantity(position))}. "
               "Hovering re-shades the text in the browser; clicking pins a token and explains it below.")

    detail, matrix = st.columns([2, 3])
    with detail:
        st.subheader("Detail")
        st.plotly_chart(plots.saliency_row_bars(sal, position, signed=signed), key="saliency_bars", width="stretch")
        st.dataframe(
            sal.detail_frame(position), hide_index=True, width="stretch",
            column_config={
                "position": st.column_config.NumberColumn("pos", width="small"),
                "token": st.column_config.TextColumn("token", width="small"),
                "share": st.column_config.ProgressColumn(
                    "share (%)", min_value=0, max_value=100, format="%.1f", width="small"
                ),
                "signed": st.column_config.NumberColumn("signed (%)", format="%+.1f", width="small"),
            },
        )
    with matrix:
        st.subheader("All generated tokens")
        figure = plots.saliency_heatmap(sal, signed=signed)
        st.plotly_chart(
            figure, key="saliency_heatmap", selection_mode="points", width="stretch",
            on_select=dashboard.on_cell_click("saliency_heatmap",
                                              lambda cell: {"saliency_token": int(sal.positions[cell[0]])}),
        )
        st.caption("Click a cell to explain that row's token.")

    st.subheader("How far to trust it")
    dashboard.page_param("saliency_faithfulness", False)
    checked = st.checkbox(
        "Check every method's faithfulness (ERASER) and their agreement, for the explained token",
        key="saliency_faithfulness",
        help="Removes the explained token's most salient earlier tokens by each method (their embeddings set to "
        "zero, as erasure does) and reads the drop in its probability: comprehensiveness (top tokens removed) "
        "and sufficiency (only they kept), averaged over 1, 5, 10, 20 and 50% of the tokens (AOPC, DeYoung et "
        "al. 2020), beside 10 random orders of the same tokens; and Kendall's tau between the methods' scores.",
    )
    faith = None
    if checked:
        faith, faith_area = dashboard.analysis(
            "Checking the faithfulness of the four methods",
            lambda progress: ec.trust.faithfulness(
                lm, cap, positions=position, target=target, contrast_with=contrast.strip() or None, steps=ig_steps,
                progress=progress,
            ),
            key="saliency_faithfulness_work",
            settings=(dashboard.capture_key(cap), position, target, contrast.strip(), ig_steps),
            estimate=lambda: estimates.faithfulness_seconds(lm, cap, positions=position, steps=ig_steps), beside=True,
        )
    if faith is not None:
        with faith_area:
            bars, agreement = st.columns([1, 1])
            bars.plotly_chart(plots.faithfulness_bars(faith, position), key="saliency_faithfulness_bars",
                              width="stretch")
            index = faith.index_of(position)
            removed = ", ".join(str(size) for size in sorted(set(faith.sizes[index].tolist())))
            bars.caption(
                f"{dashboard.literal(labels[position])}: AOPC over {faith.n_candidates[index]} earlier tokens "
                f"(removing {removed} at a time); the "
                f"token's probability on the whole text is {faith.probability[index]:.3f}. A method is faithful "
                "where its comprehensiveness stands above the random bar and its error bar, and its sufficiency "
                "below. Zeroed embeddings are off the model's data, so random removal drops the probability too."
            )
            agreement.markdown("**Agreement between the methods** (Kendall's tau of their scores)")
            # The Method select's short labels: four columns fit half the page.
            agreement.dataframe(
                faith.agreement(position).rename(columns=lambda name: method_labels.get(name, name))
                .style.format("{:.2f}"),
                width="stretch",
            )
            agreement.caption("1: the same order of the earlier tokens; 0: unrelated; negative: reversed. "
                              "IG: integrated gradients.")

    st.subheader("Download")
    dashboard.download_buttons(sal.to_frame(), f"saliency-{method}-{target}", figure)
    if faith is not None:
        st.caption("Faithfulness and agreement of the explained token (one row per method, and random):")
        dashboard.download_buttons(faith.to_frame(), f"saliency-faithfulness-{target}-{position}")
