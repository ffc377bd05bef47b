"""Long prompts: time and peak memory of capture and saliency, beside ecco's per-token loop.

Prompts of 32, 128, 512 and 1,024 tokens cut from UD English EWT (the dev file
in ``/work/shared/data/ud-english-ewt/``, read with ``ec.read_conllu``), each
followed by 20 greedy tokens, on the causal default (SmolLM2-135M-Instruct),
one thread. Each case runs in its own interpreter:

- capture: ``ec.capture(lm, prompt, max_new_tokens=20)`` (generation included);
- saliency: ``ec.saliency(lm, cap)`` (Gradient x Input, the batched backward in
  chunks of at most ``max_chunk_bytes``), the capture made before the clock;
- per-token loop: ecco's way, one forward and one backward per generated token
  on its prefix (Gradient x Input of the token's probability), also after the capture.

Memory is the resident set's peak (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` once the model is loaded and has run one short pass,
which brings its memory-mapped weights in) minus the resident set of the loaded
model, so it counts everything a step holds at once, the capture
included. The saliency and loop scores are compared with each other.

    python bench/scaling.py [length ...]

Last line: the worst saliency/loop time ratio over the lengths (target < 1) and
the saliency peak above the model at the longest length (target <= 1 GB at 1,024).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import numpy as np  # noqa: E402
from rss import peak_bytes, reset_peak  # noqa: E402

LENGTHS = (32, 128, 512, 1024)
N_NEW = 20
CASES = ("capture", "saliency", "per-token loop")
CORPUS = Path("/work/shared/data/ud-english-ewt/en_ewt-ud-dev.conllu")


# --------------------------------------------------------------- one case
def prompt_of(lm, n_tokens: int) -> str:
    """The first ``n_tokens`` tokens (as the model reads a prompt) of the UD dev sentences, as text."""
    import ecco_core as ec
    from ecco_core.tokens import encode_prompt

    words = [" ".join(sentence.words) for sentence in ec.read_conllu(CORPUS)[:400]]
    ids = encode_prompt(lm, " ".join(words))
    special = len(encode_prompt(lm, "a")) - len(lm.tokenizer("a", add_special_tokens=False)["input_ids"])
    return lm.tokenizer.decode(ids[special:n_tokens], clean_up_tokenization_spaces=False)


def per_token_loop(lm, cap) -> np.ndarray:
    """Gradient x Input of each generated token from its own forward and backward on its prefix.

    Returns scores of shape (n_generated, n_tokens), rows summing to 1 (ecco 0.1.2's way).
    """
    import torch

    ids = torch.as_tensor(cap.token_ids[None])
    scores = np.zeros((cap.n_generated, cap.n_tokens))
    for row, position in enumerate(range(cap.n_input, cap.n_tokens)):
        embeds = lm.embeddings(ids[:, :position]).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = lm.model(inputs_embeds=embeds).logits[0, -1].double()
            probability = torch.softmax(logits, dim=-1)[int(cap.token_ids[position])]
            (gradient,) = torch.autograd.grad(probability, embeds)
        norms = torch.linalg.vector_norm((gradient * embeds.detach())[0].double(), dim=-1).numpy()
        scores[row, :position] = norms / norms.sum()
    return scores


def run_case(case: str, length: int, out: Path) -> None:
    """Measure one case in this interpreter; write seconds, peak and scores to ``out`` (npz)."""
    import torch

    import ecco_core as ec
    from ecco_core.tokens import encode_prompt

    torch.set_num_threads(1)
    lm = ec.load()
    prompt = prompt_of(lm, length)
    with torch.inference_mode():  # the weights are memory-mapped: one pass brings them all into memory
        lm.model(input_ids=torch.as_tensor([encode_prompt(lm, "Warm up")]))
    model_rss = reset_peak()
    if case == "capture":
        started, cpu_started = time.perf_counter(), time.process_time()
        cap = ec.capture(lm, prompt, max_new_tokens=N_NEW, stop_at_eos=False)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        scores = np.zeros((0, cap.n_tokens))
    else:
        cap = ec.capture(lm, prompt, max_new_tokens=N_NEW, stop_at_eos=False)
        reset_peak()
        started, cpu_started = time.perf_counter(), time.process_time()
        scores = ec.saliency(lm, cap).scores if case == "saliency" else per_token_loop(lm, cap)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    np.savez(out, seconds=seconds, cpu=cpu, load=os.getloadavg()[0], peak=peak_bytes() - model_rss,
             n_input=cap.n_input, token_ids=cap.token_ids, scores=scores)


# ------------------------------------------------------------------ driver
def measure(case: str, length: int, folder: Path) -> dict:
    out = folder / f"{case.replace(' ', '_')}-{length}.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    subprocess.run([sys.executable, __file__, "--case", case, str(length), str(out)], check=True, env=env)
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def _line(case: str, result: dict) -> str:
    return (f"{int(result['n_input']):>7} {case:>15} {float(result['seconds']):>9.2f} {float(result['cpu']):>9.2f} "
            f"{float(result['peak']) / 2**20:>14.0f} MB {float(result['load']):>6.1f}")


def main(lengths, rounds: int = 1) -> None:
    worst = {"wall": (0.0, None), "cpu": (0.0, None)}
    saliency_peak = {}
    print(f"{'prompt':>7} {'case':>15} {'wall s':>9} {'cpu s':>9} {'peak above model':>17} {'load':>6}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ecco-scaling-") as folder:
        for length in lengths:
            capture = measure("capture", length, Path(folder))
            print(_line("capture", capture), flush=True)
            runs = {"saliency": [], "per-token loop": []}
            for round_ in range(rounds):  # round-robin: each round flips which of the two goes first
                order = ("saliency", "per-token loop") if round_ % 2 == 0 else ("per-token loop", "saliency")
                for case in order:
                    runs[case].append(measure(case, length, Path(folder)))
                    print(_line(case, runs[case][-1]), flush=True)
            batched, loop = runs["saliency"][0], runs["per-token loop"][0]
            if not np.array_equal(batched["token_ids"], loop["token_ids"]):
                raise RuntimeError(f"the two saliency runs at {length} tokens generated different tokens")
            difference = float(np.abs(batched["scores"] - loop["scores"]).max())
            ratios = {}
            for clock, key in (("wall", "seconds"), ("cpu", "cpu")):
                medians = {case: statistics.median(float(run[key]) for run in runs[case]) for case in runs}
                ratios[clock] = medians["saliency"] / medians["per-token loop"]
                worst[clock] = max(worst[clock], (ratios[clock], length), key=lambda pair: pair[0])
            print(f"        saliency / per-token loop (median of {rounds}): wall time {ratios['wall']:.2f}, "
                  f"CPU time {ratios['cpu']:.2f}, max |score difference| {difference:.1e}", flush=True)
            saliency_peak[length] = max(float(run["peak"]) for run in runs["saliency"])
    longest = max(saliency_peak)
    print(f"worst saliency/per-token-loop time ratio: wall {worst['wall'][0]:.2f} (at {worst['wall'][1]} tokens), "
          f"CPU {worst['cpu'][0]:.2f} (at {worst['cpu'][1]} tokens), target < 1; "
          f"saliency peak above the model at {longest} tokens {saliency_peak[longest] / 2**30:.2f} GB "
          f"(target <= 1 GB at 1024)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        run_case(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        arguments = sys.argv[1:]
        rounds = 1
        if arguments[:1] == ["--rounds"]:
            rounds, arguments = int(arguments[1]), arguments[2:]
        main([int(argument) for argument in arguments] or LENGTHS, rounds)
