"""Peer driver, run by the peers' python: ecco 0.1.2's ``OutputSeq.run_nmf`` on saved activations.

Usage: ``python peer_factors.py ACTIVATIONS.npy N_COMPONENTS``. ACTIVATIONS
is in ecco's layout, (batch, layer, neuron, position). Each line "run" on stdin
runs ecco's NMF once and answers one JSON line: seconds and the relative
reconstruction error of the clipped matrix; "save PATH" writes the last
factors' token activations (n_components, n_tokens) to PATH; "quit" stops.
"""

import json
import sys
import time

import numpy as np
import torch
from ecco.output import OutputSeq
from threadpoolctl import threadpool_limits


def main() -> None:
    torch.set_num_threads(1)
    activations = np.load(sys.argv[1])
    n_components = int(sys.argv[2])
    n_tokens = activations.shape[-1]
    output = OutputSeq(
        token_ids=torch.zeros(1, n_tokens, dtype=torch.long), n_input_tokens=n_tokens,
        tokens=[[f"t{i}" for i in range(n_tokens)]], activations={"decoder": activations},
        collect_activations_layer_nums=None, model_type="causal",
    )
    last = None
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "run":
            with threadpool_limits(1):
                start = time.perf_counter()
                last = output.run_nmf(n_components=n_components)
                seconds = time.perf_counter() - start
            error = last.model.reconstruction_err_ / np.linalg.norm(last.activations)
            print(json.dumps({"seconds": seconds, "relative_error": float(error),
                              "n_iter": int(last.model.n_iter_)}), flush=True)
        elif command == "save":
            np.save(argument, last.components)
            print("{}", flush=True)
        elif command == "quit":
            return


if __name__ == "__main__":
    main()
