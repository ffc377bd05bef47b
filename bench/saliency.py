"""Generation + Gradient x Input saliency: this project vs ecco 0.1.2 and inseq 0.7.1, side by side.

Causal default (SmolLM2-135M-Instruct), prompt "William Shakespeare was born in the
year", 20 greedy tokens, one thread. The peers run in their own interpreter
(``bench/peers.py`` builds it; ``bench/peer_saliency.py`` drives them) on the same
token ids, and every contender takes its turn in each round (round-robin), so
background load hits them alike. Medians are quoted.

- this project: ``ec.capture(lm, prompt, max_new_tokens=20)`` + ``ec.saliency(lm, cap)``
- ecco: ``LM.generate(prompt, generate=20, attribution=["grad_x_input"])``
- inseq: ``load_model(model, "input_x_gradient").attribute(prompt, generation_args=...)``
- floor: one forward + one backward (a single scalar target) of the full sequence

Accuracy: every score is compared with a float64 recomputation (a float64 copy of
the model, one forward and backward per prefix) and with ecco's own scores.

Usage: ``python bench/saliency.py [repeats]`` (default 3). Last lines: the speedups,
the attribution/floor ratio and the two differences.
"""

import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core.tokens import encode_prompt  # noqa: E402
from ecco_core.models import _smollm_folder  # noqa: E402
from peers import ensure_peer_env  # noqa: E402

PROMPT = "William Shakespeare was born in the year"
N_NEW = 20


class Peers:
    """The peer interpreter, answering one JSON request per line."""

    def __init__(self, folder: Path):
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.process = subprocess.Popen(
            [str(ensure_peer_env()), str(BENCH / "peer_saliency.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        self.prompt_ids = self.ask(cmd="setup", folder=str(folder), prompt=PROMPT, n_new=N_NEW)["ids"]

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer driver stopped while answering {request['cmd']!r}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def float64_reference(lm: ec.LM, cap: ec.Capture) -> np.ndarray:
    """Gradient x Input of every generated token, computed prefix by prefix in float64."""
    model = copy.deepcopy(lm.model).double()
    embedding = model.get_input_embeddings()
    rows = np.zeros((cap.n_generated, cap.n_tokens))
    for row, position in enumerate(range(cap.n_input, cap.n_tokens)):
        embeds = embedding(torch.tensor(cap.token_ids[None, :position])).detach().requires_grad_(True)
        probability = torch.softmax(model(inputs_embeds=embeds).logits[0, -1], dim=-1)[int(cap.token_ids[position])]
        (gradient,) = torch.autograd.grad(probability, embeds)
        norms = torch.linalg.vector_norm(gradient[0] * embeds[0], dim=-1).detach().numpy()
        rows[row, :position] = norms / norms.sum()
    return rows


def main(repeats: int = 3) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    peers = Peers(_smollm_folder())
    if peers.prompt_ids != encode_prompt(lm, PROMPT):
        raise RuntimeError(f"the peers tokenise the prompt as {peers.prompt_ids}, this project as "
                           f"{encode_prompt(lm, PROMPT)}")
    attribution_times = []

    def ours():
        cap = ec.capture(lm, PROMPT, max_new_tokens=N_NEW)
        start = time.perf_counter()
        result = ec.saliency(lm, cap)
        attribution_times.append(time.perf_counter() - start)
        return cap, result

    cap = ec.capture(lm, PROMPT, max_new_tokens=N_NEW)
    token_ids = torch.tensor(cap.token_ids[None])

    def floor():
        embeds = lm.embeddings(token_ids).detach().requires_grad_(True)
        logits = lm.model(inputs_embeds=embeds).logits
        probability = torch.softmax(logits[0, -2].double(), dim=-1)[int(token_ids[0, -1])]
        torch.autograd.grad(probability, embeds)

    # Warm-up round, which also fetches ecco's scores on the same ids.
    cap, result = ours()
    floor()
    ecco_output = peers.ask(cmd="ecco")
    peers.ask(cmd="inseq")
    if ecco_output["ids"] != cap.token_ids.tolist():
        raise RuntimeError(f"ecco generated {ecco_output['ids']}, this project {cap.token_ids.tolist()}")
    ecco_scores = np.zeros_like(result.scores)
    for row, scores in enumerate(ecco_output["scores"]):
        ecco_scores[row, : len(scores)] = scores

    timings = {"ecco": [], "inseq": [], "ours": [], "floor": []}
    attribution_times.clear()
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        floor()
        timings["floor"].append(time.perf_counter() - start)
        timings["ecco"].append(peers.ask(cmd="ecco")["seconds"])
        timings["inseq"].append(peers.ask(cmd="inseq")["seconds"])
    peers.close()

    reference = float64_reference(lm, cap)
    median = {name: statistics.median(values) for name, values in timings.items()}
    attribution = statistics.median(attribution_times)
    print(f"{lm.name}: {cap.n_input} prompt + {cap.n_generated} generated tokens, 1 thread, "
          f"median of {repeats} round-robin rounds")
    print(f"ecco 0.1.2 generate + grad_x_input: {median['ecco']:.2f} s")
    print(f"inseq 0.7.1 input_x_gradient attribute: {median['inseq']:.2f} s")
    print(f"ecco_core capture + saliency: {median['ours']:.2f} s (saliency alone {attribution:.2f} s)")
    print(f"floor, one forward + backward of the full sequence: {median['floor']:.2f} s")
    print(f"ecco's own max abs diff vs float64: {np.abs(ecco_scores - reference).max():.2e}")
    print(f"speedup vs ecco: {median['ecco'] / median['ours']:.2f}x")
    print(f"speedup vs inseq: {median['inseq'] / median['ours']:.2f}x")
    print(f"attribution / floor: {attribution / median['floor']:.2f}x")
    print(f"max abs diff vs float64: {np.abs(result.scores - reference).max():.2e}")
    print(f"max abs diff vs ecco: {np.abs(result.scores - ecco_scores).max():.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
