"""Figure 6's matrix, 13 hidden states x 12 FFN activations on 2000 tokens: ecco_core vs ecco 0.1.2.

Data: real activations of the causal default (SmolLM2-135M-Instruct, d_model
576, d_ff 1536) over the first 2000 token positions of UD English EWT dev
sentences, for its first 12 blocks (hidden states 0..12, FFN 0..11): a
12-layer-sized setting with real widths. Both sides get the same float64
arrays.

Contenders, round-robin, one BLAS thread each: ``similarity_matrix`` for the
whole 13 x 12 matrix, and ecco 0.1.2's ``ecco.analysis.cka`` / ``pwcca`` in
the peers' interpreter (``bench/peer_similarity.py``). ecco's pair-by-pair
matrix costs minutes, so it runs a representative subset of pairs and its
whole-matrix time is extrapolated from their mean per pair (said in the
output); the max abs difference is over the pairs it ran.

Last line: the speed-up over ecco and the max abs difference, per method.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from bench.peers import ensure_peer_env  # noqa: E402
from ecco_core.models import cache_dir  # noqa: E402

N_TOKENS = 2000
N_BLOCKS = 12
PEER_PAIRS = [(0, 0), (1, 0), (3, 2), (6, 6), (9, 4), (12, 11)]
METHODS = ("cka", "pwcca")
PEER_DRIVER = Path(__file__).resolve().parent / "peer_similarity.py"


def activations(lm) -> Path:
    """Hidden states 0..12 and FFN 0..11 of the first N_TOKENS non-special UD dev positions (cached)."""
    path = cache_dir() / f"similarity-bench-{N_TOKENS}.npz"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    captures, total = [], 0
    for text in ec.similarity.ud_sentences(1000):
        captures.append(ec.capture(lm, text))
        total += int((~captures[-1].special).sum())
        if total >= N_TOKENS:
            break
    hidden = ec.similarity.layer_activations(captures, "hidden")[: N_BLOCKS + 1]
    ffn = ec.similarity.layer_activations(captures, "ffn")[:N_BLOCKS]
    np.savez(path, hidden=np.stack(hidden)[:, :N_TOKENS], ffn=np.stack(ffn)[:, :N_TOKENS])
    return path


def run_peer(peer_python: Path, path: Path, method: str) -> dict:
    output = subprocess.run(
        [str(peer_python), str(PEER_DRIVER), str(path), method, json.dumps(PEER_PAIRS)],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(rounds: int = 3) -> None:
    torch.set_num_threads(1)
    peer_python = ensure_peer_env()
    path = activations(ec.load())
    data = np.load(path)
    hidden, ffn = list(data["hidden"].astype(np.float64)), list(data["ffn"].astype(np.float64))
    n_pairs = len(hidden) * len(ffn)

    ours_seconds = {method: [] for method in METHODS}
    peer_seconds = {method: [] for method in METHODS}
    ours, peer = {}, {}
    for _ in range(rounds):
        for method in METHODS:
            start = time.perf_counter()
            ours[method] = ec.similarity.similarity_matrix(hidden, ffn, method).values
            ours_seconds[method].append(time.perf_counter() - start)
            peer[method] = run_peer(peer_python, path, method)
            per_pair = statistics.mean(pair["seconds"] for pair in peer[method]["pairs"])
            peer_seconds[method].append(per_pair * n_pairs)

    print(f"{len(hidden)} hidden states (d {hidden[0].shape[1]}) x {len(ffn)} FFN activations "
          f"(d {ffn[0].shape[1]}), {N_TOKENS} tokens of UD EWT dev through SmolLM2-135M-Instruct")
    print(f"one BLAS thread, median of {rounds} round-robin rounds; ecco ran {len(PEER_PAIRS)} of the "
          f"{n_pairs} pairs {PEER_PAIRS} and its whole matrix is extrapolated from their mean time per pair")
    summary = []
    for method in METHODS:
        ours_median = statistics.median(ours_seconds[method])
        peer_median = statistics.median(peer_seconds[method])
        differences = [abs(pair["value"] - ours[method][pair["row"], pair["column"]]) for pair in peer[method]["pairs"]]
        row, column = PEER_PAIRS[0]
        shifted = ec.similarity.similarity_matrix([hidden[row] + 1.0], [ffn[column]], method).values[0, 0]
        print(f"{method}: ecco_core {ours_median:.2f} s for the matrix, ecco 0.1.2 ~{peer_median:.1f} s "
              f"(extrapolated), speed-up {peer_median / ours_median:.1f}x, max abs diff {max(differences):.2e}")
        print(f"{method}: after adding 1.0 to every hidden neuron of pair {PEER_PAIRS[0]}: ecco changes by "
              f"{abs(peer[method]['shifted_first'] - peer[method]['pairs'][0]['value']):.2e}, "
              f"ecco_core by {abs(shifted - ours[method][row, column]):.2e}")
        summary.append(f"{method} {peer_median / ours_median:.1f}x faster, max abs diff {max(differences):.1e}")
    print("vs ecco 0.1.2: " + "; ".join(summary))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
