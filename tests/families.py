"""Tiny randomly initialised models, one per ``model_type`` in the family table.

They check the table (where blocks, FFN projections, norms and heads are),
never results: random weights say nothing about language.
"""

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

import ecco_core as ec

_WIDTH, _FFN, _LAYERS, _HEADS = 32, 48, 2, 4

_CONFIGS = {
    "gpt2": dict(n_embd=_WIDTH, n_inner=_FFN, n_layer=_LAYERS, n_head=_HEADS, n_positions=256),
    "gpt_neo": dict(
        hidden_size=_WIDTH, intermediate_size=_FFN, num_layers=_LAYERS, num_heads=_HEADS,
        attention_types=[[["global", "local"], 1]], max_position_embeddings=256,
    ),
    "gpt_neox": dict(
        hidden_size=_WIDTH, intermediate_size=_FFN, num_hidden_layers=_LAYERS, num_attention_heads=_HEADS,
        max_position_embeddings=256,
    ),
    "opt": dict(
        hidden_size=_WIDTH, ffn_dim=_FFN, num_hidden_layers=_LAYERS, num_attention_heads=_HEADS,
        word_embed_proj_dim=_WIDTH, max_position_embeddings=256,
    ),
    "bert": dict(
        hidden_size=_WIDTH, intermediate_size=_FFN, num_hidden_layers=_LAYERS, num_attention_heads=_HEADS,
        max_position_embeddings=256,
    ),
    "roberta": dict(
        hidden_size=_WIDTH, intermediate_size=_FFN, num_hidden_layers=_LAYERS, num_attention_heads=_HEADS,
        max_position_embeddings=256, pad_token_id=0,
    ),
    "distilbert": dict(dim=_WIDTH, hidden_dim=_FFN, n_layers=_LAYERS, n_heads=_HEADS, max_position_embeddings=256),
}
for _llama_like in ("llama", "qwen2", "qwen3", "mistral"):
    _CONFIGS[_llama_like] = dict(
        hidden_size=_WIDTH, intermediate_size=_FFN, num_hidden_layers=_LAYERS, num_attention_heads=_HEADS,
        num_key_value_heads=2, head_dim=_WIDTH // _HEADS, max_position_embeddings=256,
    )

TINY_MODEL_TYPES = sorted(_CONFIGS)
TINY_D_MODEL, TINY_D_FF, TINY_N_LAYERS = _WIDTH, _FFN, _LAYERS


def tiny_lm(model_type: str, causal_tokenizer, masked_tokenizer) -> ec.LM:
    """A random-weight model of ``model_type`` wrapped as an LM, with a real tokenizer of the right kind."""
    spec = ec.models.family_for(model_type)
    tokenizer = causal_tokenizer if spec.causal else masked_tokenizer
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **_CONFIGS[model_type])
    torch.manual_seed(0)
    model_class = AutoModelForCausalLM if spec.causal else AutoModelForMaskedLM
    model = model_class.from_config(config)
    return ec.wrap(model, tokenizer, name=f"tiny-{model_type}")
