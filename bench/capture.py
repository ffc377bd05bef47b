"""Capture (hidden states + FFN activations) vs a plain forward pass, causal default, 128 tokens.

Round-robin in one process, one thread, medians. Last line: the ratio (target <= 1.15).
"""

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import ecco_core as ec  # noqa: E402

PASSAGE = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden press adapted from those used to make "
    "wine. Within a few decades printing shops had spread from Mainz to more than two hundred cities "
    "across Europe, and the price of books fell so far that ordinary merchants could afford them. "
    "Scholars argue about how quickly the new technology changed the way people read, but few doubt "
    "that it helped the Reformation, the Scientific Revolution and the rise of vernacular literature. "
    "Printers standardised spelling, invented title pages and page numbers, and built networks of "
    "booksellers that carried pamphlets, maps and almanacs to readers who had never owned a manuscript."
)


def main(repeats: int = 15) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    ids = lm.tokenizer(PASSAGE)["input_ids"][:128]
    text = lm.tokenizer.decode(ids)
    n_tokens = len(ec.capture(lm, text).tokens)
    input_ids = torch.tensor([lm.tokenizer(text)["input_ids"]])

    def plain():
        with torch.inference_mode():
            lm.model(input_ids=input_ids)

    def captured():
        ec.capture(lm, text)

    timings = {"plain forward": [], "capture": []}
    for _ in range(2):  # warm-up
        plain(), captured()
    for _ in range(repeats):
        for name, run in (("plain forward", plain), ("capture", captured)):
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    print(f"causal default, {n_tokens} tokens, 1 thread, median of {repeats}")
    for name, value in medians.items():
        print(f"{name}: {value * 1000:.1f} ms")
    print(f"capture / plain forward: {medians['capture'] / medians['plain forward']:.3f}")


if __name__ == "__main__":
    main()
