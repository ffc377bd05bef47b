"""Peer driver, run by the peers' interpreter: ecco 0.1.2's bundled similarity code on given layer pairs.

Usage: python peer_similarity.py ACTIVATIONS.npz METHOD PAIRS_JSON
Prints one JSON object: per pair its value and seconds, and the value of the
first pair again with a constant added to every hidden-state neuron.
"""

import json
import sys
import time

import numpy as np
from ecco import analysis


def main(path: str, method: str, pairs: str) -> None:
    data = np.load(path)
    hidden, ffn = data["hidden"].astype(np.float64), data["ffn"].astype(np.float64)
    score = getattr(analysis, method)
    results = []
    for row, column in json.loads(pairs):
        # ecco takes (neurons, tokens)
        acts1, acts2 = np.ascontiguousarray(hidden[row].T), np.ascontiguousarray(ffn[column].T)
        start = time.perf_counter()
        value = float(score(acts1, acts2))
        results.append({"row": row, "column": column, "value": value, "seconds": time.perf_counter() - start})
    row, column = json.loads(pairs)[0]
    shifted = float(score(np.ascontiguousarray(hidden[row].T) + 1.0, np.ascontiguousarray(ffn[column].T)))
    print(json.dumps({"pairs": results, "shifted_first": shifted}))


if __name__ == "__main__":
    main(*sys.argv[1:])
