"""A model loaded with an explicit device_map (accelerate's dispatch, every module named) works through every analysis.

On a machine with several GPUs the same map would spread the blocks over them;
here every entry says "cpu", so the dispatch path (accelerate's hooks that move
each module's inputs to its device) runs in CI. Results must equal those of the
same weights loaded plainly.
"""

import accelerate
import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import ecco_core as ec
from ecco_core.capture import DEFAULT_CHUNK_BYTES
from families import _CONFIGS

TEXT = "The keys to the cabinet"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, lm):
    """A random-weight Llama-family model saved as a local folder with the default's tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = AutoConfig.for_model("llama", vocab_size=len(lm.tokenizer), **_CONFIGS["llama"])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def _every_module_on_cpu(folder) -> dict:
    """A device_map naming every top-level piece of the model: embeddings, each block, norm, rotary, head."""
    config = AutoConfig.from_pretrained(folder)
    names = ["model.embed_tokens", "model.norm", "model.rotary_emb", "lm_head"]
    names += [f"model.layers.{index}" for index in range(config.num_hidden_layers)]
    return {name: "cpu" for name in names}


@pytest.fixture(scope="module")
def plain_and_mapped(tiny_folder):
    """The same weights loaded plainly and through a device_map, with accelerate's hooks on every named module.

    With one device in the map transformers places the modules without hooks;
    ``force_hooks`` adds the ones a multi-device map gets (inputs moved to each
    module's device, outputs back to the caller's), so their path runs here.
    """
    plain = ec.load(str(tiny_folder))
    device_map = _every_module_on_cpu(tiny_folder)
    mapped = ec.load(str(tiny_folder), device_map=device_map)
    accelerate.dispatch_model(mapped.model, device_map=device_map, force_hooks=True)
    assert all(hasattr(block, "_hf_hook") for block in mapped.blocks) and hasattr(mapped.embeddings, "_hf_hook")
    return plain, mapped


def test_capture_saliency_and_rankings_match_the_plainly_loaded_model(plain_and_mapped):
    plain, mapped = plain_and_mapped
    captures = [ec.capture(lm, TEXT, max_new_tokens=4, stop_at_eos=False) for lm in (plain, mapped)]
    np.testing.assert_array_equal(captures[1].token_ids, captures[0].token_ids)
    for name in ("hidden_states", "ffn", "top_probs"):
        np.testing.assert_allclose(getattr(captures[1], name), getattr(captures[0], name), atol=1e-6, err_msg=name)
        assert isinstance(getattr(captures[1], name), np.ndarray)
    for method in ec.SALIENCY_METHODS:
        for budget in (DEFAULT_CHUNK_BYTES, 1):  # whole graph, then block by block
            results = [ec.saliency(lm, cap, method=method, steps=3, max_chunk_bytes=budget)
                       for lm, cap in zip((plain, mapped), captures)]
            np.testing.assert_allclose(results[1].scores, results[0].scores, atol=1e-6, err_msg=method)
    ranks = [ec.rankings(lm, cap) for lm, cap in zip((plain, mapped), captures)]
    np.testing.assert_array_equal(ranks[1].ranks, ranks[0].ranks)
    assert ranks[1].max_abs_diff_vs_model < 1e-4


def test_attention_and_patching_match_the_plainly_loaded_model(plain_and_mapped):
    plain, mapped = plain_and_mapped
    maps = [ec.attention(lm, ec.capture(lm, TEXT), method="rollout") for lm in (plain, mapped)]
    np.testing.assert_allclose(maps[1].scores, maps[0].scores, atol=1e-6)
    for approximate in (False, True):
        effects = [ec.patch(lm, TEXT, ec.Noise([1]), " is", approximate=approximate).effects
                   for lm in (plain, mapped)]
        np.testing.assert_allclose(effects[1], effects[0], atol=1e-5, err_msg=f"approximate={approximate}")
