"""Attention: time and peak memory of ``ec.attention`` per method vs the model's own ``output_attentions``.

The baseline is what a user of Hugging Face would write: an eager copy of the
model (made once, outside the timing; SDPA never forms the weights) run with
``output_attentions=True``, its weights stacked into one numpy array as
``ec.attention`` returns them. ``ec.attention`` runs on the shared model
(its private eager twin is made inside each call, and timed). Two texts on the
causal default (30 blocks x 9 query heads): a prompt as long as the app's default
("William Shakespeare was born in the year" + 20 generated tokens) and a
512-token passage; at 512 tokens also ``layers=[0]``, the page's way of
asking for the blocks on screen only. Contenders run round-robin in one
process with one thread; peak memory is the kernel's high-water mark above
the resident memory before each call (``bench/lens.py``'s ``round_robin``).
Last line: ec.attention raw / output_attentions at 512 tokens.
"""

import codecs
import contextlib
import copy
import importlib
import io
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from capture import PASSAGE  # noqa: E402  (bench/capture.py: a real English passage)
from lens import round_robin  # noqa: E402

N_LONG = 512
BASELINE = "model's own output_attentions"


def own_attentions(eager_model, cap) -> np.ndarray:
    """(n_layers, n_heads, n_tokens, n_tokens) from the model's own eager pass with output_attentions=True."""
    with torch.inference_mode():
        output = eager_model(input_ids=torch.from_numpy(cap.token_ids[None]), output_attentions=True)
        return torch.stack([weights[0] for weights in output.attentions]).float().numpy()


def main(repeats: int = 5) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    eager_model = copy.deepcopy(lm.model)
    eager_model.set_attn_implementation("eager")
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen of Python
        zen = codecs.decode(importlib.import_module("this").s, "rot13")
    # The passage and the Zen of Python, twice over: real English, cut at N_LONG tokens.
    ids = lm.tokenizer(2 * (PASSAGE + "\n\n" + zen + "\n\n"), add_special_tokens=False)["input_ids"][:N_LONG]
    texts = {
        "default example": ec.capture(lm, "William Shakespeare was born in the year", max_new_tokens=20),
        f"{N_LONG}-token passage": ec.capture(lm, lm.tokenizer.decode(ids)),
    }
    print(f"causal default {lm.name}: {lm.n_layers} blocks x {lm.n_heads} query heads "
          f"({lm.n_kv_heads} key/value heads), 1 thread, medians of {repeats}")
    ratios = {}
    for label, cap in texts.items():
        contenders = {f"ec.attention {method}": (lambda method=method: ec.attention(lm, cap, method))
                      for method in ec.ATTENTION_METHODS}
        if cap.n_tokens == N_LONG:
            contenders["ec.attention raw, layers=[0]"] = lambda: ec.attention(lm, cap, "raw", layers=[0])
        contenders[BASELINE] = lambda: own_attentions(eager_model, cap)
        seconds, peaks, results = round_robin(contenders, repeats)
        difference = np.abs(results["ec.attention raw"].scores - results[BASELINE]).max()
        print(f"{label}, {cap.n_tokens} tokens (raw vs {BASELINE}: max |diff| {difference:.1e}):")
        for name in contenders:
            print(f"  {name}: {statistics.median(seconds[name]):.3f} s, "
                  f"peak {statistics.median(peaks[name]):.0f} MB above the loaded model")
        ratios[label] = (
            statistics.median(seconds["ec.attention raw"]) / statistics.median(seconds[BASELINE]),
            statistics.median(peaks["ec.attention raw"]) / max(statistics.median(peaks[BASELINE]), 1e-9),
        )
    time_ratio, memory_ratio = ratios[f"{N_LONG}-token passage"]
    print(f"ec.attention raw / {BASELINE}, {N_LONG} tokens: time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x")


if __name__ == "__main__":
    main()
