"""Activation patching and causal tracing: invariants on the real default, a hook written here, every family."""

import copy
import gc

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core import plots
from ecco_core.capture import encode_prompt
from ecco_core.layers import site_label
from ecco_core.patching import SITES

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
EIFFEL = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def ioi(lm):
    return ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John")


@pytest.fixture(scope="module")
def ioi_approximate(lm):
    return ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", approximate=True)


def _hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.model.modules())


def _site_module(model, site, layer):
    return {"residual": model.blocks, "attention": model.attention_modules, "ffn": model.ffn_projections}[site][layer]


def _by_hand(model, clean_ids, corrupted_embeds, site, layer, position, read_position, answer_id, foil_id):
    """Logit difference of one patched run: one full forward of the corrupted input, with a hook written here
    that overwrites the site's output at ``position`` by the value a second hook recorded on the clean run."""
    module = _site_module(model, site, layer)
    recorded = {}

    def first(output):
        return output[0] if isinstance(output, tuple) else output

    def shaped(tensor):  # OPT's fc2 sees (batch * n_tokens, d)
        return tensor.view(1, -1, tensor.shape[-1])

    def record(module, args, output):
        recorded["clean"] = shaped(first(output))[0, position].clone()

    def overwrite(module, args, output):
        tensor = first(output)
        patched = shaped(tensor).clone()
        patched[0, position] = recorded["clean"]
        patched = patched.view(tensor.shape)
        return (patched, *output[1:]) if isinstance(output, tuple) else patched

    with torch.no_grad():
        handle = module.register_forward_hook(record)
        try:
            model.model(input_ids=torch.tensor([clean_ids]))
        finally:
            handle.remove()
        handle = module.register_forward_hook(overwrite)
        try:
            logits = model.model(inputs_embeds=corrupted_embeds).logits[0, read_position].double()
        finally:
            handle.remove()
    return float(logits[answer_id] - logits[foil_id])


def test_the_default_metric_is_named_by_its_readouts_labels(monkeypatch):
    """The Causal tracing page named the default metric in its own words; it reads it from the readouts now."""
    assert ec.patching.default_metric_label() == "logit difference with a foil, else probability"
    monkeypatch.setitem(ec.READOUTS, "prob", ec.READOUTS["prob"]._replace(label="chance"))
    assert ec.patching.default_metric_label() == "logit difference with a foil, else chance"


# ------------------------------------------------------------ invariants on the real default
def test_the_default_answers_mary_and_patching_restores_it(lm, ioi):
    assert ioi.clean_top[0][0] == " Mary"
    assert ioi.sites == ("residual", "attention", "ffn") and ioi.metric == "logit_diff"
    assert ioi.effects.shape == (3, lm.n_layers, 14) and ioi.values.shape == ioi.effects.shape
    assert ioi.clean_value > 0 > ioi.corrupted_value
    np.testing.assert_allclose(
        ioi.effects, (ioi.values - ioi.corrupted_value) / (ioi.clean_value - ioi.corrupted_value)
    )
    # Before the first changed token (position 9, " John" / " Mary") nothing differs: exactly 0, not run.
    assert (ioi.effects[:, :, :9] == 0).all()
    assert ioi.patches_run == 3 * lm.n_layers * 5
    assert ec.patching.work(lm, CLEAN, CORRUPTED, "Mary", "John") == (ioi.patches_run, 3 * lm.n_layers * (5 + 4 + 3 + 2 + 1))
    # Early residual at the changed name carries it all; the last block's output at the last token too.
    residual = ioi.site("residual")
    np.testing.assert_allclose(residual[0, 9], 1, atol=0.05)
    np.testing.assert_allclose(residual[-1, -1], 1, atol=1e-4)
    assert ioi.top_tokens[0][-1][-1][0] == " Mary"


def test_restoring_every_position_of_a_layer_is_the_clean_run_and_nothing_the_corrupted(lm, ioi):
    n_tokens = ioi.n_tokens
    patches = [[("residual", layer, p) for p in range(n_tokens)] for layer in (0, 11, lm.n_layers - 1)] + [[]]
    values = ec.patching.restore(lm, CLEAN, CORRUPTED, "Mary", "John", patches=patches)
    np.testing.assert_allclose(values[:3], ioi.clean_value, rtol=1e-4)
    assert values[3] == ioi.corrupted_value
    normalised = (values - ioi.corrupted_value) / (ioi.clean_value - ioi.corrupted_value)
    np.testing.assert_allclose(normalised, [1, 1, 1, 0], atol=1e-4)


@pytest.mark.parametrize("site, layer, position", [("ffn", 20, 9), ("attention", 26, 13), ("residual", 5, 10)])
def test_one_effect_equals_a_recomputation_with_a_hook_written_here(lm, ioi, site, layer, position):
    clean_ids = lm.tokenizer(CLEAN)["input_ids"]
    corrupted_embeds = lm.embeddings(torch.tensor([lm.tokenizer(CORRUPTED)["input_ids"]]))
    value = _by_hand(lm, clean_ids, corrupted_embeds, site, layer, position, 13, ioi.answer_id, ioi.foil_id)
    np.testing.assert_allclose(ioi.values[ioi.sites.index(site), layer, position], value, rtol=1e-4, atol=1e-4)


def test_a_window_restores_its_layers_together(lm):
    result = ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", sites=["ffn"], window=5)
    assert list(result.restored_layers(0)) == [0, 1, 2] and list(result.restored_layers(10)) == [8, 9, 10, 11, 12]
    assert list(result.restored_layers(lm.n_layers - 1)) == [lm.n_layers - 3, lm.n_layers - 2, lm.n_layers - 1]
    expected = ec.patching.restore(
        lm, CLEAN, CORRUPTED, "Mary", "John", patches=[[("ffn", block, 13) for block in range(8, 13)]]
    )
    np.testing.assert_allclose(result.values[0, 10, 13], expected[0], rtol=1e-5, atol=1e-5)
    assert result.to_frame().query("block == 10")["restored"].iloc[0] == "block 8 FFN to block 12 FFN"


def test_to_frame_labels_layers_with_the_shared_vocabulary(lm, ioi):
    frame = ioi.to_frame()
    assert len(frame) == 3 * lm.n_layers * ioi.n_tokens
    row = frame.query("site == 'ffn' and block == 20 and position == 9").iloc[0]
    assert row["layer"] == site_label("ffn", 20) == "block 20 FFN"
    assert row["token"] == " John" and row["corrupted_token"] == " Mary"
    assert row["effect"] == ioi.site("ffn")[20, 9] and row["method"] == "activation patching"
    assert row["top_predictions"][0] == row["top_prediction"] and len(row["top_predictions"]) == 5
    assert set(frame["layer"]) >= {"block 0", "block 3 attention", "block 29 FFN"}


def test_a_pinned_cells_predictions_stand_beside_the_clean_and_corrupted_runs(ioi, ioi_approximate):
    frame = ioi.predictions_frame("ffn", 13, 20)
    k = ioi.top_ids.shape[-1]
    assert list(frame.columns) == ["rank", "patched run", "p (patched)", "clean run", "corrupted run"]
    assert frame["rank"].tolist() == list(range(1, k + 1))
    assert frame["patched run"].tolist() == [plots.display_token(t) for t in ioi.top_tokens[2][20][13]]
    np.testing.assert_array_equal(frame["p (patched)"], ioi.top_probs[2, 20, 13])
    assert frame["clean run"][0] == " Mary" and frame["corrupted run"].tolist() == [
        plots.display_token(t) for t, _ in ioi.corrupted_top[:k]]
    assert ioi_approximate.predictions_frame("ffn", 13, 20).empty  # no patched run to read
    with pytest.raises(ValueError, match="position must be a whole number from 0 to 13; got 14"):
        ioi.predictions_frame("ffn", 14, 20)


def test_patching_leaves_the_shared_model_as_it_was(lm, ioi):
    hooks = _hook_counts(lm)
    ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", sites=["attention"], approximate=True)
    assert _hook_counts(lm) == hooks
    assert all(p.grad is None and not p.requires_grad for p in lm.model.parameters())


def test_progress_counts_every_batched_pass(lm):
    seen = []
    result = ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", sites=["ffn"],
                      progress=lambda fraction, message: seen.append((fraction, message)))
    assert len(seen) > 1 and seen[-1] == (1.0, f"{result.patches_run} of {result.patches_run} patched runs")
    assert [fraction for fraction, _ in seen] == sorted(fraction for fraction, _ in seen)


def test_no_batched_pass_holds_more_than_a_progress_report_of_work(lm):
    """#31: a 70-token prompt sat on "Starting…" 26 s, its first batch of patched runs filling 256 MiB. Now a
    report comes after at most :data:`ecco_core.backward.REPORT_MULTIPLY_ADDS` of work."""
    from ecco_core import backward

    seen = []
    ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", progress=lambda fraction, message: seen.append(fraction))
    _, positions = ec.patching.work(lm, CLEAN, CORRUPTED, "Mary", "John")
    block_work = sum(p.numel() for p in lm.blocks.parameters())
    assert len(seen) >= positions * block_work / backward.REPORT_MULTIPLY_ADDS


def test_exact_patching_keeps_one_runs_outputs_through_its_batches_and_skips_what_the_other_already_has(lm):
    """#31 item 18: exact patching kept the corrupted run's site outputs through every patched batch (0.1 GB at
    512 tokens) to skip the patches that would restore what is already there; where they differ is all it needs.
    Between batches only the clean run's outputs are alive, and the patches run are exactly those where the
    runs differ: every block from the first changed token on (a causal model's earlier positions see the same
    tokens), the skipped ones' effects 0."""
    corrupted = CLEAN.removesuffix(" to") + " for"  # the last token alone: the fewest patched runs
    clean_ids, corrupted_ids = (encode_prompt(lm, text) for text in (CLEAN, corrupted))
    n_tokens, changed = len(clean_ids), next(p for p, (a, b) in enumerate(zip(clean_ids, corrupted_ids)) if a != b)
    alive = []

    def count(fraction, message):  # at the first report: a scan of every object is slow
        if not alive:
                alive.append(sum(type(o) is torch.Tensor and tuple(o.shape) == (1, n_tokens, lm.d_model)
                             for o in gc.get_objects()))

    result = ec.patch(lm, CLEAN, corrupted, "Mary", "John", sites=["residual"], progress=count)
    assert changed == n_tokens - 1 and alive[0] < 2 * lm.n_layers  # the clean run's 30 block outputs and the two inputs
    assert result.patches_run == lm.n_layers * (n_tokens - changed)
    assert np.all(result.effects[0, :, :changed] == 0)
    np.testing.assert_allclose(result.effects[0, -1, -1], 1, atol=1e-5)


def test_a_batch_shares_the_corrupted_runs_prefix_instead_of_holding_a_copy_per_row(lm):
    """#31 item 18: every row of a patched batch held its own copy of the corrupted run's keys and values before
    its patched position, kept by every layer to the end of the pass (+250 MiB a batch at 512 tokens, twice over
    with two sessions' runs at once). The rows share one copy now, and the logits are those of a copy per row."""
    corrupted = CLEAN.removesuffix(" to") + " for"
    runs = ec.patching._prepare(lm, CLEAN, corrupted, "Mary", "John")
    prefix, batch = runs.corrupted_embeds.shape[1] - 1, 8

    def held(cache) -> int:
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for layer in cache.layers for t in (layer.keys, layer.values)}
        return sum(storages.values())

    with torch.inference_mode():
        _, _, cache = ec.patching._recorded_run(lm, runs.corrupted_embeds, runs.read_position, [])
        embeds = runs.corrupted_embeds[:, prefix:].expand(batch, -1, -1)
        shared = ec.patching._shared_prefix(cache, prefix, batch)
        logits, _ = ec.patching._logits(lm, embeds, runs.read_position, past=shared, prefix=prefix)
        copied = copy.deepcopy(cache)
        copied.crop(prefix - copied.get_seq_length())
        copied.batch_repeat_interleave(batch)
        expected, _ = ec.patching._logits(lm, embeds, runs.read_position, past=copied, prefix=prefix)
    assert held(shared) == held(cache) and held(copied) > batch * held(cache) / 2
    assert torch.equal(logits, expected)


# ------------------------------------------------------------ noise (causal tracing)
def test_noise_is_reproducible_and_leaves_other_positions_untouched(lm):
    ids = torch.tensor([lm.tokenizer(EIFFEL)["input_ids"]])
    with torch.no_grad():
        embeds = lm.embeddings(ids)
    noise = ec.Noise([1, 2, 3], seed=7)
    first, second = noise.corrupt(lm, embeds), noise.corrupt(lm, embeds)
    assert torch.equal(first, second)
    assert torch.equal(first[0, [0, *range(4, ids.shape[1])]], embeds[0, [0, *range(4, ids.shape[1])]])
    assert not torch.isclose(first[0, 1:4], embeds[0, 1:4]).any()
    spread = (first - embeds)[0, 1:4].std()
    np.testing.assert_allclose(float(spread), 3 * float(lm.embeddings.weight.std()), rtol=0.1)
    assert not torch.equal(ec.Noise([1, 2, 3], seed=8).corrupt(lm, embeds), first)
    assert torch.equal(embeds, lm.embeddings(ids))  # the input is left as it was


def test_causal_tracing_of_the_subject_is_reproducible(lm):
    kwargs = dict(sites=["residual"], approximate=True)
    first = ec.patch(lm, EIFFEL, ec.Noise([0, 1, 2, 3]), "Paris", **kwargs)
    again = ec.patch(lm, EIFFEL, ec.Noise([0, 1, 2, 3]), "Paris", **kwargs)
    other = ec.patch(lm, EIFFEL, ec.Noise([0, 1, 2, 3], seed=1), "Paris", **kwargs)
    assert first.metric == "prob" and first.clean_top[0][0] == " Paris"
    assert first.clean_value > 0.5 > first.corrupted_value
    np.testing.assert_array_equal(first.values, again.values)
    assert first.corrupted_value != other.corrupted_value
    assert first.tokens == first.corrupted_tokens and "positions 0 'The', 1 ' E'" in first.corruption


# ------------------------------------------------------------ attribution patching
def test_attribution_patching_is_exact_where_the_metric_is_linear(lm):
    """Without the final norm, the logit difference is linear in the last block's output and FFN output."""
    model = copy.deepcopy(lm.model)
    model.model.norm = torch.nn.Identity()
    linear = ec.wrap(model, lm.tokenizer, name="SmolLM2 without final norm")
    kwargs = dict(sites=["residual", "ffn"])
    exact = ec.patch(linear, CLEAN, CORRUPTED, "Mary", "John", **kwargs)
    approximate = ec.patch(linear, CLEAN, CORRUPTED, "Mary", "John", approximate=True, **kwargs)
    assert approximate.approximate and approximate.top_ids.shape[-1] == 0 and approximate.patches_run == 0
    np.testing.assert_allclose(approximate.values[:, -1], exact.values[:, -1], rtol=1e-4, atol=1e-4)
    assert np.abs(exact.effects[:, -1, -1]).min() > 0.01  # not trivially zero
    # Elsewhere the layers in between make it an approximation: not equal.
    assert not np.allclose(approximate.values[0, 5], exact.values[0, 5], atol=1e-3)


def test_attribution_patching_correlates_with_exact_on_the_default(ioi, ioi_approximate, record_property):
    result = ec.patching.correlation(ioi, ioi_approximate)
    table = result.to_frame()  # a frozen result, as every other view's
    assert result.sites == ("residual", "attention", "ffn", "all") and result.n_cells[-1] == ioi.effects.size
    assert list(table.columns) == ["site", "pearson_r", "n_cells"]
    assert list(table["site"]) == ["residual", "attention", "ffn", "all"]
    expected = np.corrcoef(ioi.site("ffn").ravel(), ioi_approximate.site("ffn").ravel())[0, 1]
    np.testing.assert_allclose(table.set_index("site").loc["ffn", "pearson_r"], expected)
    for site, r in zip(table["site"], table["pearson_r"]):
        record_property(f"pearson_r_{site}", round(float(r), 3))  # reported, not asserted (README)
    assert np.isfinite(table["pearson_r"]).all()
    assert ioi_approximate.clean_value == ioi.clean_value and ioi_approximate.corrupted_value == ioi.corrupted_value


# ------------------------------------------------------------ every family
def test_every_family_patches_each_site_as_a_hook_written_here_does(tiny):
    if tiny.is_causal:
        clean, corrupted = "The keys to the cabinet", "The keys of the cabinet"
    else:
        clean, corrupted = "The keys to the [MASK] cabinet", "The keys of the [MASK] cabinet"
    hooks = _hook_counts(tiny)
    result = ec.patch(tiny, clean, corrupted, "table", "door")
    approximate = ec.patch(tiny, clean, corrupted, "table", "door", approximate=True)
    assert _hook_counts(tiny) == hooks
    clean_ids = tiny.tokenizer(clean.replace("[MASK]", tiny.tokenizer.mask_token or ""))["input_ids"]
    corrupted_ids = tiny.tokenizer(corrupted.replace("[MASK]", tiny.tokenizer.mask_token or ""))["input_ids"]
    changed = next(p for p, (a, b) in enumerate(zip(clean_ids, corrupted_ids)) if a != b)
    read_position = result.read_position
    assert read_position == (len(clean_ids) - 1 if tiny.is_causal else clean_ids.index(tiny.tokenizer.mask_token_id))
    assert result.effects.shape == approximate.effects.shape == (3, tiny.n_layers, len(clean_ids))
    with torch.no_grad():
        corrupted_embeds = tiny.embeddings(torch.tensor([corrupted_ids]))
    for index, site in enumerate(SITES):
        for layer, position in [(0, changed), (tiny.n_layers - 1, read_position)]:
            value = _by_hand(tiny, clean_ids, corrupted_embeds, site, layer, position, read_position,
                             result.answer_id, result.foil_id)
            np.testing.assert_allclose(result.values[index, layer, position], value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.values[0, -1, read_position], result.clean_value, rtol=1e-5, atol=1e-5)


def test_an_encoder_without_head_says_what_to_load(encoder):
    with pytest.raises(ValueError, match="has no language-modelling head"):
        ec.patch(encoder, "The [MASK] is red.", "The [MASK] is blue.", "car")


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(corrupted="When Mary and John went to the store, Mary gave a drink to her"),
         r"same number of tokens.*the clean prompt is 14 tokens, the corrupted prompt 15; they first differ at "
         r"position 9: clean \[…, ' the', ' store', ',', ' John', ' gave', ' a', ' drink', …\], corrupted "
         r"\[…, ' the', ' store', ',', ' Mary', ' gave', ' a', ' drink', …\]$"),
        (dict(foil=" Mary"), r"answer 'Mary' and foil ' Mary' are the same token ' Mary'"),
        (dict(clean=""), "clean must be a string of text .*not empty or whitespace only.*; got ''"),
        (dict(corrupted="   "), "corrupted must be a string of text .*not empty or whitespace only.*; got '   '"),
        (dict(corrupted=CLEAN), "the corrupted prompt is the same text as the clean one"),
        (dict(answer=""), "answer is empty"),
        (dict(sites=["mlp"]), r"sites must be one or more distinct sites, each one of 'residual', 'attention', "
                              r"'ffn'; got \('mlp',\)"),
        (dict(sites=[]), r"sites must be one or more distinct sites.*; got \(\)"),
        (dict(metric="kl"), r"metric must be one of 'logit_diff', 'prob', 'logprob'; got 'kl'"),
        (dict(foil=None, metric="logit_diff"), "metric 'logit_diff' needs a foil"),
        (dict(window=0), "window must be a whole number from 1 to 64; got 0"),
        (dict(window=2.5), "window must be a whole number from 1 to 64; got 2.5"),
        (dict(window=3, approximate=True), "window must be 1 with approximate=True"),
        (dict(corrupted=ec.Noise([40])), r"Noise positions \[40\] are outside the clean prompt's 14 tokens"),
        (dict(corrupted=3), r"corrupted must be a prompt \(str\) or ec.Noise"),
    ],
)
def test_bad_input_is_one_clear_error(lm, kwargs, message):
    arguments = dict(clean=CLEAN, corrupted=CORRUPTED, answer="Mary", foil="John") | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        ec.patch(lm, **arguments)


def test_a_long_prompt_of_another_length_is_named_by_the_tokens_around_its_first_difference(lm):
    """Not every token of both prompts (1,000 tokens were a wall of text): a few around where they part."""
    clean = " ".join(["The keys to the cabinet are on the table."] * 100) + " Mary gave a drink to"
    corrupted = clean.replace(" Mary gave", " Mary and her sister gave")
    with pytest.raises(ValueError) as error:
        ec.patch(lm, clean, corrupted, answer="John")
    message = str(error.value)
    n_clean = len(encode_prompt(lm, clean))
    differ = n_clean - 4  # ' gave' there, ' and' in the corrupted prompt
    assert message.endswith(
        f"the clean prompt is {n_clean} tokens, the corrupted prompt {n_clean + 3}; they first differ at position "
        f"{differ}: clean […, ' table', '.', ' Mary', ' gave', ' a', ' drink', ' to'], "
        "corrupted […, ' table', '.', ' Mary', ' and', ' her', ' sister', ' gave', …]"
    )
    assert len(message) < 400


@pytest.mark.parametrize("positions", [[], [-1], [1, 1], ["a"], None, "12"])
def test_noise_positions_are_checked(positions):
    with pytest.raises((ValueError, TypeError), match=r"Noise positions must be one or more distinct token "
                                                       r"positions \(whole numbers >= 0\); got "):
        ec.Noise(positions)


@pytest.mark.parametrize("scale, seed, message", [(0, 0, "Noise scale must be a finite number > 0; got 0"),
                                                  (3.0, 1.5, "Noise seed must be a whole number; got 1.5")])
def test_noise_scale_and_seed_are_checked(scale, seed, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ec.Noise([1], scale=scale, seed=seed)


def test_a_corruption_that_changes_nothing_is_named(lm):
    with pytest.raises(ValueError, match="the clean and corrupted runs give the same logit of the answer minus"):
        ec.patch(lm, CLEAN, ec.Noise([13], scale=1e-30), "Mary", "John", sites=["ffn"])


# ------------------------------------------------------------ figures
def test_figures_escape_token_text_and_mark_the_corrupted_positions(lm, encoder):
    from families import tiny_lm

    from ecco_core import plots

    tiny = tiny_lm("gpt2", causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
    result = ec.patch(tiny, "<b>keys</b> to the cabinet", "<b>keys</b> of the cabinet", "table", "door")
    changed = result.corrupted_positions[0]
    figure = plots.patching_heatmap(result, "attention", pinned=(changed, 1))
    heat, cells = figure.data
    assert all("<" not in label and ">" not in label.replace("→", "") for label in heat.y)
    assert heat.y[0] == "0: &lt;" and "&gt;" in " ".join(heat.y)
    assert heat.y[changed].endswith("→ of")
    assert all("<b>" not in text for text in cells.hovertext) and "&lt;" in cells.hovertext[0]
    assert [shape.x0 for shape in figure.layout.shapes] == [0.5]
    assert heat.colorscale[-1][1] == plots.SITE_COLORS["attention"]
    combined = plots.patching_figure(result)
    assert len(combined.data) == 2 * len(result.sites) and combined.data[0].y[0] == "0: &lt;"
    noise = ec.patch(tiny, "<b>keys</b> to the cabinet", ec.Noise([0]), "table", approximate=True)
    assert plots.patching_heatmap(noise, "ffn").data[0].y[0].endswith("*")
    assert len(plots.patching_scatter(result, ec.patch(
        tiny, "<b>keys</b> to the cabinet", "<b>keys</b> of the cabinet", "table", "door", approximate=True
    )).data) == 4


def test_restore_names_a_bad_patch(lm):
    with pytest.raises(ValueError, match=r"each entry of patches must be \(site, block, position\) with site one of "
                                         r"'residual', 'attention', 'ffn', block 0 to 29 and position 0 to 13; got "
                                         r"\('ffn', 30, 0\)"):
        ec.patching.restore(lm, CLEAN, CORRUPTED, "Mary", "John", patches=[[("ffn", 30, 0)]])


# ------------------------------------------------------------ noise draws (#30)
NOISE_PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def single_draws(lm):
    """Exact patching of the block outputs under noise draws 4 and 5, each alone."""
    return [ec.patch(lm, NOISE_PROMPT, ec.Noise([1, 2], seed=seed), "Paris", sites=("residual",)) for seed in (4, 5)]


def test_noise_samples_average_the_draws_as_meng_et_al(lm, single_draws):
    averaged = ec.patch(lm, NOISE_PROMPT, ec.Noise([1, 2], seed=4, samples=2), "Paris", sites=("residual",))
    values = np.mean([draw.values for draw in single_draws], axis=0)
    corrupted = np.mean([draw.corrupted_value for draw in single_draws])
    np.testing.assert_allclose(averaged.values, values, atol=1e-9)
    assert averaged.corrupted_value == pytest.approx(corrupted)
    np.testing.assert_allclose(averaged.effects, (values - corrupted) / (averaged.clean_value - corrupted), atol=1e-9)
    np.testing.assert_allclose(averaged.draw_effects, [draw.effects for draw in single_draws], atol=1e-9)
    assert "seeds 4 to 5, averaged" in averaged.corruption
    frame = averaged.to_frame()
    np.testing.assert_allclose(frame["effect_draw_std"], averaged.draw_effects.std(axis=0, ddof=1).ravel())
    assert single_draws[0].draw_effects is None and "effect_draw_std" not in single_draws[0].to_frame()
    assert ec.patching.work(lm, NOISE_PROMPT, ec.Noise([1, 2], samples=2), "Paris", sites=("residual",))[0] == (
        averaged.patches_run)


def test_one_cells_effect_under_each_draw_alone(lm, single_draws):
    spread = ec.patching.draw_effects(lm, NOISE_PROMPT, ec.Noise([1, 2], seed=4), "Paris", site="residual",
                                      layer=3, position=2, draws=2)
    np.testing.assert_allclose(spread, [draw.effects[0, 3, 2] for draw in single_draws], atol=1e-4)
    with pytest.raises(ValueError, match="Noise samples must be a whole number from 1 to 100"):
        ec.Noise([1], samples=0)
    with pytest.raises(TypeError, match="noise must be an ec.Noise"):
        ec.patching.draw_effects(lm, NOISE_PROMPT, "The capital of Spain is", "Paris", site="ffn", layer=0,
                                 position=0)
