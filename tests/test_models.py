"""The family table and the offline default models."""

import numpy as np
import pytest
import torch

import ecco_core as ec
from families import TINY_D_FF, TINY_D_MODEL, TINY_N_LAYERS


def test_causal_default_is_real_and_offline(lm):
    assert lm.spec.model_types[0] == "llama" and lm.is_causal
    assert (lm.n_layers, lm.d_model, lm.d_ff) == (30, 576, 1536)
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=3)
    assert cap.generated_text == " Paris.\n"


def _sentence_embedding(encoder, text):
    cap = ec.capture(encoder, text)
    vector = cap.hidden_states[-1].mean(axis=0)
    return vector / np.linalg.norm(vector)


def test_encoder_default_is_real(encoder):
    assert encoder.spec.name == "BERT" and not encoder.is_causal and not encoder.has_head
    assert (encoder.n_layers, encoder.d_model, encoder.d_ff) == (6, 384, 1536)
    a = _sentence_embedding(encoder, "A man is playing a guitar.")
    b = _sentence_embedding(encoder, "Someone plays an acoustic guitar.")
    c = _sentence_embedding(encoder, "The stock market fell sharply on Monday.")
    assert a @ b > a @ c + 0.2


def test_every_family_row_matches_its_model(tiny):
    assert tiny.n_layers == TINY_N_LAYERS
    assert tiny.d_model == TINY_D_MODEL
    assert tiny.d_ff == TINY_D_FF
    assert tiny.has_head
    assert all(type(module).__name__.endswith("Attention") for module in tiny.attention_modules)
    assert all(not p.requires_grad for p in tiny.model.parameters())


def _out_width(projection):
    return getattr(projection, "out_features", None) or projection.nf


def test_every_family_row_finds_values_and_output_projection(tiny):
    assert tiny.spec.qkv_layout in ec.models.QKV_LAYOUTS
    n_heads, n_kv, head_dim = tiny.n_heads, tiny.n_kv_heads, tiny.head_dim
    assert n_heads == tiny.config.num_attention_heads and n_heads * head_dim == TINY_D_MODEL
    values_width = {"separate": n_kv * head_dim, "fused": 3 * n_heads * head_dim,
                    "fused_per_head": 3 * n_heads * head_dim}[tiny.spec.qkv_layout]
    assert [_out_width(p) for p in tiny.value_projections] == [values_width] * TINY_N_LAYERS
    assert [_out_width(p) for p in tiny.output_projections] == [TINY_D_MODEL] * TINY_N_LAYERS
    # both live inside the block's attention module
    for attention, values, output in zip(tiny.attention_modules, tiny.value_projections, tiny.output_projections):
        inside = {id(module) for module in attention.modules()}
        assert id(values) in inside and id(output) in inside


def test_every_family_row_names_the_module_of_each_patching_site(tiny):
    assert tiny.site_modules("residual") == list(tiny.blocks)
    # each site's module is the block itself or inside it, one per block
    for site in ec.PATCHING_SITES:
        modules = tiny.site_modules(site)
        assert len({id(module) for module in modules}) == TINY_N_LAYERS
        for block, module in zip(tiny.blocks, modules):
            assert any(module is inside for inside in block.modules())
    with pytest.raises(ValueError, match="site must be one of 'residual', 'attention', 'ffn'; got 'mlp'"):
        tiny.site_modules("mlp")


def test_last_layer_through_norm_and_head_is_the_model_output(tiny):
    text = "The keys to the cabinet" if tiny.is_causal else "The keys to the [MASK] are here."
    cap = ec.capture(tiny, text, max_new_tokens=2 if tiny.is_causal else 0)
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor(cap.token_ids[None])).logits[0]
        lens = tiny.unembed(torch.tensor(cap.hidden_states[-1]))
    torch.testing.assert_close(lens, logits, atol=1e-5, rtol=1e-5)


def test_supported_types_cover_the_design_targets():
    wanted = {"gpt2", "gpt_neo", "gpt_neox", "llama", "qwen2", "opt", "bert", "distilbert", "roberta"}
    assert wanted <= set(ec.supported_model_types())


@pytest.mark.parametrize(
    "name, message",
    [
        ("./no/such/folder", "does not exist"),
        ("no-such-org/no-such-model", "not found"),
        ("", "non-empty string"),
        (None and 3, "non-empty string"),
    ],
)
def test_bad_model_names_say_what_works_offline(name, message):
    with pytest.raises(ValueError, match=message) as error:
        ec.load(name if name is not None else 3)
    if "non-empty" not in message:
        assert ec.DEFAULT_MODEL in str(error.value)


def test_unknown_family_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    with pytest.raises(ValueError, match="'t5' is not supported"):
        ec.load(str(tmp_path))
