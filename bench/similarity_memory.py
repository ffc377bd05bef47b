"""Peak memory of layer similarity over many UD sentences: a Capture per sentence vs batched passes and a disk store.

Figure 6 over the first N sentences of UD English EWT dev (200 by default,
the Similarity page's maximum) on the causal default, linear CKA, hidden
states (31 rows) against FFN activations (30 columns), computed twice, each
in a fresh process:

- old: ``layer_similarity([ec.capture(lm, t) for t in texts])``, what the
  page did (every capture holds all layers, top-k and all; the pooled
  stacks are then concatenated in memory);
- new: ``corpus_similarity(lm, texts, store="disk")`` (padded batches, only
  the compared positions of the compared layers, float32 on disk, read one
  layer at a time).

Peak RSS is measured above the loaded model: the process's high-water mark
is reset (``/proc/self/clear_refs``) once the model is loaded and has run
once, and read when the matrix is done. Prints both peaks and times and the
largest difference of the two matrices; the ratio of the peaks (new / old)
is the last line.

    python bench/similarity_memory.py                  # 200 sentences
    python bench/similarity_memory.py --sentences 50   # a quicker run
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rss import peak_bytes, reset_peak  # noqa: E402

WAYS = ("old", "new")


def phase(way: str, args, folder: Path) -> None:
    """One way in this process; writes its matrix (.npy) and figures (.json) to ``folder``."""
    import numpy as np
    import torch

    import ecco_core as ec

    torch.set_num_threads(args.threads)
    lm = ec.load(ec.DEFAULT_MODEL)
    texts = ec.similarity.ud_sentences(args.sentences)
    ec.capture(lm, "The capital of France is")  # the weights' pages are read at the first forward pass
    model_bytes = reset_peak()  # the peak from here on: above the loaded model
    started = time.perf_counter()
    if way == "old":
        result = ec.similarity.layer_similarity([ec.capture(lm, text) for text in texts], "cka")
    else:
        result = ec.similarity.corpus_similarity(lm, texts, "cka", store="disk")
    figures = {
        "seconds": time.perf_counter() - started,
        "peak_above_model_mb": (peak_bytes() - model_bytes) / 2**20,
        "n_texts": len(texts),
        "n_samples": result.n_samples,
    }
    np.save(folder / f"{way}.npy", result.values)
    (folder / f"{way}.json").write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phase", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args, args.folder)
        return

    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="similarity-memory-"))
    for way in WAYS:
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--phase", way, "--folder", str(folder)], check=True)
    results = {way: json.loads((folder / f"{way}.json").read_text()) for way in WAYS}
    old, new = (np.load(folder / f"{way}.npy") for way in WAYS)
    first = results["old"]
    print(f"SmolLM2-135M-Instruct, linear CKA, hidden states x FFN, {first['n_texts']} UD sentences "
          f"({first['n_samples']} token positions), {args.threads} thread(s):")
    for way, label in (("old", "captures + layer_similarity"), ("new", "corpus_similarity, disk store")):
        figures = results[way]
        print(f"  {way} ({label}): peak {figures['peak_above_model_mb']:.0f} MB above the loaded model, "
              f"{figures['seconds']:.0f} s wall")
    difference = float(np.abs(old - new).max())
    print(f"  matrices: largest difference {difference:.1e} ({old.shape[0]} x {old.shape[1]})")
    assert results["new"]["n_samples"] == first["n_samples"] and difference < 1e-5, "the two ways disagree"
    ratio = results["new"]["peak_above_model_mb"] / first["peak_above_model_mb"]
    print(f"peak RSS above the model, new / old: {ratio:.2f} "
          f"({results['new']['peak_above_model_mb']:.0f} MB / {first['peak_above_model_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
