"""Every analysis on a GPU, in bfloat16, against the CPU float32 results: agreement and time per step.

Three loads of the causal default (SmolLM2-135M-Instruct): the CPU in float32
(the reference), ``device="cuda"`` in bfloat16, and ``device_map="auto"`` in
bfloat16 (accelerate spreads the blocks over every visible GPU). Each runs, on
the same tokens (the reference's generation is given as ``answer=``, so a
bfloat16 model analyses the very text the CPU did):

- capture: hidden states and FFN activations, relative error of the whole array
  (``|a - b| / |b|`` in Frobenius norm) <= 0.05, and the same top prediction at
  >= 90 % of positions;
- saliency (Gradient x Input): scores within 0.05 of the reference everywhere
  and the same most-attributed token for >= 80 % of the explained tokens;
- rankings (the logit lens): the rank of each generated token within a factor
  of 2 of the reference's at >= 90 % of (layer, token) cells (a rank of
  thousands moves by tens in bfloat16), and rank 1 at the last layer where the
  reference has it for >= 90 % of the tokens;
- patching (causal tracing, exact): effects within 0.1 of the reference.

bfloat16 keeps 8 bits of mantissa (about 3 significant digits), so these
tolerances say "the same picture", not "the same numbers". Each step is timed
after one warm-up call (CUDA work synchronised). Without a CUDA device the
script says so and stops with status 0: it is never needed by CI.

    python bench/device.py

Last line: the slowest device/CPU time ratio over the steps and whether every
check held.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402

PROMPT = "William Shakespeare was born in the year"
N_NEW = 20
PATCH_CLEAN, PATCH_NOISE, PATCH_ANSWER = "The Eiffel Tower is in the city of", [1, 2, 3, 4], " Paris"


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def timed(step):
    """Run ``step`` once to warm up, then once timed; returns (result, seconds)."""
    step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def run_all(lm, answer: str | None):
    """Every step on ``lm``: {step: (result, seconds)}."""
    kwargs = {"answer": answer} if answer is not None else {"max_new_tokens": N_NEW, "stop_at_eos": False}
    cap, capture_seconds = timed(lambda: ec.capture(lm, PROMPT, **kwargs))
    return cap, {
        "capture": (cap, capture_seconds),
        "saliency": timed(lambda: ec.saliency(lm, cap)),
        "rankings": timed(lambda: ec.rankings(lm, cap)),
        "patching": timed(lambda: ec.patch(lm, PATCH_CLEAN, ec.Noise(PATCH_NOISE), PATCH_ANSWER)),
    }


def checks(results, reference) -> dict[str, tuple[bool, str]]:
    """Each step's agreement with the CPU float32 reference: {step: (held, what was measured)}."""
    cap, ref_cap = results["capture"][0], reference["capture"][0]
    same_tokens = np.array_equal(cap.token_ids, ref_cap.token_ids)
    hidden = relative_error(cap.hidden_states, ref_cap.hidden_states) if same_tokens else np.inf
    ffn = relative_error(cap.ffn, ref_cap.ffn) if same_tokens else np.inf
    top = float(np.mean(cap.top_ids[:, 0] == ref_cap.top_ids[:, 0])) if same_tokens else 0.0
    saliency, ref_saliency = results["saliency"][0], reference["saliency"][0]
    score_error = float(np.abs(saliency.scores - ref_saliency.scores).max()) if same_tokens else np.inf
    argmax = float(np.mean(saliency.scores.argmax(1) == ref_saliency.scores.argmax(1))) if same_tokens else 0.0
    ranks, ref_ranks = results["rankings"][0].ranks, reference["rankings"][0].ranks
    close_ranks = float(np.mean(np.abs(np.log2(ranks / ref_ranks)) <= 1)) if same_tokens else 0.0
    first = ref_ranks[-1] == 1
    same_first = float(np.mean(ranks[-1][first] == 1)) if same_tokens and first.any() else 0.0
    effects = results["patching"][0].effects
    effect_error = float(np.abs(effects - reference["patching"][0].effects).max())
    return {
        "capture": (hidden <= 0.05 and ffn <= 0.05 and top >= 0.9,
                    f"same tokens {same_tokens}, relative error hidden {hidden:.3f} ffn {ffn:.3f}, same top-1 {top:.0%}"),
        "saliency": (score_error <= 0.05 and argmax >= 0.8,
                     f"max |score difference| {score_error:.3f}, same most-attributed token {argmax:.0%}"),
        "rankings": (close_ranks >= 0.9 and same_first >= 0.9,
                     f"ranks within a factor of 2 {close_ranks:.0%}, last layer's rank 1 kept {same_first:.0%}"),
        "patching": (effect_error <= 0.1, f"max |effect difference| {effect_error:.3f}"),
    }


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device on this machine: bench/device.py measures GPU runs only; nothing was run")
        return
    torch.manual_seed(0)
    reference_cap, reference = run_all(ec.load(), answer=None)
    answer = reference_cap.generated_text
    print(f"CPU float32 reference: {reference_cap.n_tokens} tokens; "
          + ", ".join(f"{step} {seconds * 1e3:.0f} ms" for step, (_, seconds) in reference.items()), flush=True)
    worst_ratio, all_held = 0.0, True
    for label, load_kwargs in (
        ('device="cuda", bfloat16', {"device": "cuda", "dtype": torch.bfloat16}),
        ('device_map="auto", bfloat16', {"device_map": "auto", "dtype": torch.bfloat16}),
    ):
        lm = ec.load(**load_kwargs)
        _, results = run_all(lm, answer=answer)
        print(f"{label} ({torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(0)}):", flush=True)
        for step, (held, measured) in checks(results, reference).items():
            seconds, reference_seconds = results[step][1], reference[step][1]
            worst_ratio = max(worst_ratio, seconds / reference_seconds)
            all_held &= held
            print(f"  {step:>9}: {seconds * 1e3:8.1f} ms (CPU {reference_seconds * 1e3:8.1f} ms)  "
                  f"{'ok' if held else 'OUT OF TOLERANCE'}: {measured}", flush=True)
        del lm
        torch.cuda.empty_cache()
    print(f"slowest device/CPU time ratio {worst_ratio:.2f}; every check within its tolerance: {all_held}")


if __name__ == "__main__":
    main()
