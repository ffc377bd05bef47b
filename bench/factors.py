"""NMF of every FFN neuron: ecco_core.factors vs ecco 0.1.2's run_nmf on the same activations.

The causal default reads a ~300-token passage (the opening of Notes from
Underground, the paper's Figure 9 text); its FFN activations of all 30 layers
(46,080 neurons) are factored into 10 NMF factors by ``ecco_core.factors`` in
this process and by ecco's ``OutputSeq.run_nmf`` in the peers' interpreter,
fed the same array (saved to .npy in ecco's (batch, layer, neuron, position)
layout). Both clip negatives to 0 and use scikit-learn 1.9.1's NMF; ecco
starts from a random init (max 500 iterations), ecco_core from NNDSVDa.
Round-robin, one thread each, medians. Last line: the time ratio.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import ecco_core as ec  # noqa: E402
from peers import ensure_peer_env  # noqa: E402

N_COMPONENTS = 10
N_TOKENS = 300
DRIVER = Path(__file__).resolve().parent / "peer_factors.py"
PASSAGE = (
    "I am a sick man.... I am a spiteful man. I am an unattractive man. I believe my liver is diseased. "
    "However, I know nothing at all about my disease, and do not know for certain what ails me. I don't "
    "consult a doctor for it, and never have, though I have a respect for medicine and doctors. Besides, I "
    "am extremely superstitious, sufficiently so to respect medicine, anyway (I am well-educated enough not "
    "to be superstitious, but I am superstitious). No, I refuse to consult a doctor from spite. That you "
    "probably will not understand. Well, I understand it, though. Of course, I can't explain who it is "
    "precisely that I am mortifying in this case by my spite: I am perfectly well aware that I cannot "
    "\"pay out\" the doctors by not consulting them; I know better than anyone that by all this I am only "
    "injuring myself and no one else. But still, if I don't consult a doctor it is from spite. My liver is "
    "bad, well, let it get worse!\n\nI have been going on like that for a long time, twenty years. Now I am "
    "forty. I used to be in the government service, but am no longer. I was a spiteful official. I was rude "
    "and took pleasure in being so. I did not take bribes, you see, so I was bound to find a recompense in "
    "that, at least. (A poor jest, but I will not scratch it out. I wrote it thinking it would sound very "
    "witty; but now that I have seen myself that I only wanted to show off in a despicable way, I will not "
    "scratch it out on purpose!)"
)


def matched_correlations(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    k = len(first)
    correlation = np.corrcoef(first, second)[:k, k:]
    rows, columns = linear_sum_assignment(-correlation)
    return correlation[rows, columns]


def main(repeats: int = 5) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    ids = lm.tokenizer(PASSAGE)["input_ids"][:N_TOKENS]
    cap = ec.capture(lm, lm.tokenizer.decode(ids))

    with tempfile.TemporaryDirectory() as folder:
        activations_path = Path(folder) / "activations.npy"
        np.save(activations_path, cap.ffn.transpose(0, 2, 1)[None])  # (batch, layer, neuron, position)
        peer = subprocess.Popen(
            [str(ensure_peer_env()), str(DRIVER), str(activations_path), str(N_COMPONENTS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

        def ask_peer(command: str) -> dict:
            peer.stdin.write(command + "\n")
            peer.stdin.flush()
            return json.loads(peer.stdout.readline())

        def ours():
            with threadpool_limits(1):
                start = time.perf_counter()
                result = ec.factors(cap, "nmf", n_components=N_COMPONENTS)
                return time.perf_counter() - start, result

        ours(), ask_peer("run")  # warm-up: imports, caches
        timings = {"ecco": [], "ecco_core": []}
        for _ in range(repeats):
            seconds, result = ours()
            timings["ecco_core"].append(seconds)
            answer = ask_peer("run")
            timings["ecco"].append(answer["seconds"])
        ecco_factors_path = Path(folder) / "ecco_factors.npy"
        ask_peer(f"save {ecco_factors_path}")
        ecco_factors = np.load(ecco_factors_path)
        peer.stdin.write("quit\n")
        peer.stdin.close()
        peer.wait()

    medians = {name: statistics.median(values) for name, values in timings.items()}
    agreement = matched_correlations(result.token_activations, ecco_factors)
    print(f"causal default, {cap.n_tokens} tokens x {result.n_neurons} neurons ({cap.n_layers} layers), "
          f"NMF with {N_COMPONENTS} factors, 1 thread, median of {repeats}")
    print(f"ecco 0.1.2 run_nmf: {medians['ecco']:.2f} s (random init, {answer['n_iter']} iterations), "
          f"relative reconstruction error {answer['relative_error']:.4f}")
    print(f"ecco_core.factors: {medians['ecco_core']:.2f} s (NNDSVDa init, converged: {result.converged}), "
          f"relative reconstruction error {result.reconstruction_error:.4f}")
    print(f"same factors? matched correlation of token activations, ecco vs ecco_core: "
          f"min {agreement.min():.3f}, median {np.median(agreement):.3f}")
    print(f"ecco_core.factors / ecco run_nmf time: {medians['ecco_core'] / medians['ecco']:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
