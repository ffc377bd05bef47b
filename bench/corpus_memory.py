"""Peak memory of the paper's probing protocol on the causal default, activations in RAM vs on disk.

The protocol of Table 1 (10,000 tokens of UD English EWT dev, every layer:
the embeddings, 30 block outputs and 30 FFNs of SmolLM2-135M-Instruct; 5
trials, 50 epochs, Adam at 1e-3) run twice, each in a fresh process:
``store="memory"`` (every representation in float32 numpy arrays, 2.6 GB,
plus their standardised bfloat16 copy) and ``store="disk"`` (float16 files of
an ActivationStore, trained a group of layers at a time). Peak RSS is
measured above the loaded model: the process's high-water mark is reset
(``/proc/self/clear_refs``) once the model is loaded and read when the table
is done. Target: the disk path peaks at <= 2 GB above the model, with the same
table to 0.5 points. Prints both peaks, times and the largest difference of
the two tables in points; the ratio of the peaks (disk / memory) is the last line.

    python bench/corpus_memory.py                   # both protocols, one after the other
    python bench/corpus_memory.py --parallel        # both at once (times then overlap; peaks do not)
    python bench/corpus_memory.py --collect-only    # the features collection alone, both ways
    python bench/corpus_memory.py --tokens 2000 --epochs 5 --trials 2   # a smaller configuration
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

COLUMNS = ["accuracy", "accuracy_std", "selectivity", "selectivity_std", "control_accuracy"]


def phase(store: str, args, out: Path) -> None:
    """One protocol (or collection) in this process; writes its figures to ``out`` as JSON."""
    import torch

    import ecco_core as ec

    torch.set_num_threads(args.threads)
    lm = ec.load(ec.DEFAULT_MODEL)
    ec.capture(lm, "The capital of France is")  # the weights' pages are read at the first forward pass
    model_bytes = reset_peak()  # the peak from here on: above the loaded model
    started = time.perf_counter()
    figures = {"store": store}
    if args.collect_only:
        data = ec.probing.collect(lm, ec.probing.UD_ENGLISH_EWT_DEV, n_tokens=args.tokens, store=store,
                                  progress=lambda f, m: None)
        figures["n_tokens"] = data.n_tokens
        data.close()
    else:
        table = ec.probe_table(lm, ec.probing.UD_ENGLISH_EWT_DEV, n_tokens=args.tokens, trials=args.trials,
                               epochs=args.epochs, lr=1e-3, seed=0, store=store, progress=lambda f, m: None).to_frame()
        figures["table"] = table[["layer", *COLUMNS]].to_dict("list")
        figures["n_tokens"] = table.attrs["n_tokens"]
    figures["seconds"] = time.perf_counter() - started
    figures["peak_above_model_mb"] = (peak_bytes() - model_bytes) / 2**20
    out.write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("--phase", choices=["memory", "disk"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args, args.out)
        return

    folder = Path(tempfile.mkdtemp(prefix="corpus-memory-"))
    passed = [a for a in sys.argv[1:] if a != "--parallel"]
    commands = {
        store: [sys.executable, __file__, *passed, "--phase", store, "--out", str(folder / f"{store}.json")]
        for store in ("memory", "disk")
    }
    if args.parallel:
        for process in [subprocess.Popen(command) for command in commands.values()]:
            if process.wait():
                sys.exit(f"a phase failed (exit {process.returncode})")
    else:
        for command in commands.values():
            subprocess.run(command, check=True)
    results = {store: json.loads((folder / f"{store}.json").read_text()) for store in commands}
    what = "features collection" if args.collect_only else (
        f"probing protocol ({args.tokens} tokens, all layers, {args.trials} trials, {args.epochs} epochs)"
    )
    print(f"SmolLM2-135M-Instruct, {what}, {args.threads} thread(s){', both at once' if args.parallel else ''}:")
    for store, figures in results.items():
        print(f"  store={store}: peak {figures['peak_above_model_mb']:.0f} MB above the loaded model, "
              f"{figures['seconds']:.0f} s wall")
    if not args.collect_only:
        import numpy as np

        memory, disk = (np.array([results[s]["table"][c] for c in COLUMNS]) for s in ("memory", "disk"))
        assert results["memory"]["table"]["layer"] == results["disk"]["table"]["layer"]
        print(f"  tables: largest difference {100 * np.abs(memory - disk).max():.2f} points "
              f"(accuracy, selectivity, their stds, control accuracy; {memory.shape[1]} rows)")
    ratio = results["disk"]["peak_above_model_mb"] / results["memory"]["peak_above_model_mb"]
    print(f"peak RSS above the model, disk store / in RAM: {ratio:.2f} "
          f"({results['disk']['peak_above_model_mb']:.0f} MB / {results['memory']['peak_above_model_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
