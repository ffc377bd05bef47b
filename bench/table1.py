"""The paper's Table 1 protocol on UD English EWT dev, for the encoder default and the causal default.

10,000 tokens, 67/33 split, linear softmax probes, Adam at 1e-3, 50 epochs,
5 trials, with Hewitt & Liang control tasks. Two threads (the target: the
encoder's whole protocol, capture included, in <= 2 minutes on 2 CPU cores).
Prints each model's table as Markdown (percent, mean (± std) over trials),
then the wall times as the last line.

    python bench/table1.py                 # both models
    python bench/table1.py --encoder-only
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core import probing  # noqa: E402
from ecco_core.probing import table1_markdown  # noqa: E402

DEV = probing.UD_ENGLISH_EWT_DEV


def run(name: str) -> tuple[str, float, float]:
    lm = ec.load(name)
    started = time.perf_counter()
    cpu_started = time.process_time()
    table = ec.probe_table(lm, DEV, n_tokens=10_000, trials=5, epochs=50, lr=1e-3, seed=0,
                           progress=lambda f, m: None).to_frame()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    majority = 100 * table["majority_accuracy"].iloc[0]
    print(f"\n### {name} ({lm.n_layers} layers, d_model {lm.d_model}, d_ff {lm.d_ff})\n")
    print(table1_markdown(table))
    print(f"\nMost-frequent-tag baseline: {majority:.1f}%. Wall {wall:.0f} s, CPU {cpu:.0f} s.", flush=True)
    return name, wall, cpu


def main() -> None:
    torch.set_num_threads(2)
    names = [ec.DEFAULT_ENCODER] if "--encoder-only" in sys.argv else [ec.DEFAULT_ENCODER, ec.DEFAULT_MODEL]
    results = [run(name) for name in names]
    print(
        "wall time (10k tokens, 5 trials x 50 epochs, capture included, 2 threads): "
        + "; ".join(f"{name} {wall:.0f} s (CPU {cpu:.0f} s)" for name, wall, cpu in results)
    )


if __name__ == "__main__":
    main()
