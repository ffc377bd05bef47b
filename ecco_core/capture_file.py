"""Reading a capture file (``Capture.save``'s ``.npz``) that may be damaged or crafted.

Every array's ``.npy`` header is read first (a few hundred bytes of each zip
member), so declared shapes, dtypes and their consistency are checked, and
the total size bounded, before anything is decompressed: a 2 MB file that
declares a 2 GiB array is refused without allocating it. Every malformed file
(truncated, empty, bit-flipped, missing arrays, bad metadata) gives one
:class:`ValueError` that names the file and what is wrong.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._checks import whole

MAX_CAPTURE_BYTES = 2**30  # what Capture.load accepts unless told more: the arrays once decompressed

# Array name -> (number of axes, allowed dtype kinds): b bool, i/u integer, f float, U text.
_ARRAYS = {
    "meta": (0, "U"),
    "token_ids": (1, "iu"),
    "special": (1, "b"),
    "hidden_states": (3, "f"),
    "ffn": (3, "f"),
    "top_ids": (2, "iu"),
    "top_probs": (2, "f"),
}


class MalformedCapture(ValueError):
    """What is wrong with a capture file, before the file's name is added."""


def _header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype that member ``name``.npy declares, read without decompressing its data."""
    with archive.open(name + ".npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise MalformedCapture(f"{name} has .npy format version {version}; 1.0 or 2.0 is expected")
    return shape, dtype


def _check_layout(headers: dict, max_bytes: int) -> None:
    """Raise unless the declared shapes fit one capture and their total stays within ``max_bytes``.

    token_ids, special (n_tokens,); hidden_states (n_layers + 1, n_tokens, d_model);
    ffn (n_layers, n_tokens, d_ff); top_ids, top_probs (n_tokens, k); meta a text scalar.
    """
    for name, (n_axes, kinds) in _ARRAYS.items():
        shape, dtype = headers[name]
        if len(shape) != n_axes or dtype.kind not in kinds:
            raise MalformedCapture(f"{name} declares shape {shape} and dtype {dtype}; "
                                   f"{n_axes} axes of kind {kinds!r} are expected")
    n_tokens = headers["token_ids"][0][0]
    hidden, ffn = headers["hidden_states"][0], headers["ffn"][0]
    expected = {
        "special": (n_tokens,),
        "hidden_states": (ffn[0] + 1, n_tokens, hidden[2]),
        "ffn": (hidden[0] - 1, n_tokens, ffn[2]),
        "top_probs": headers["top_ids"][0],
        "top_ids": (n_tokens, headers["top_ids"][0][1]),
    }
    for name, shape in expected.items():
        if headers[name][0] != shape:
            raise MalformedCapture(
                f"{name} declares shape {headers[name][0]}, which does not fit token_ids {(n_tokens,)}, "
                f"hidden_states {hidden} and ffn {ffn}"
            )
    if n_tokens < 1 or ffn[0] < 1:
        raise MalformedCapture(f"the capture declares {n_tokens} tokens and {ffn[0]} blocks; at least 1 each")
    total = sum(int(np.prod(shape, dtype=np.float64)) * dtype.itemsize for shape, dtype in headers.values())
    if total > max_bytes:
        raise MalformedCapture(
            f"its arrays declare {total} bytes once decompressed; max_bytes allows {max_bytes} "
            "(pass a larger max_bytes to Capture.load for a capture you trust)"
        )


def _check_meta(meta, n_tokens: int, k: int) -> dict:
    """The metadata dict, checked against the arrays' ``n_tokens`` and top-``k``."""
    if not isinstance(meta, dict):
        raise MalformedCapture(f"meta is a JSON {type(meta).__name__}; an object is expected")
    types = {"n_input": int, "model_name": str, "causal": bool, "tokens": list, "top_tokens": list,
             "settings": dict}
    for key, kind in types.items():
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta[key], bool)):
            raise MalformedCapture(f"meta[{key!r}] is {meta.get(key)!r:.80}; a JSON {kind.__name__} is expected")
    if not 0 <= meta["n_input"] <= n_tokens:
        raise MalformedCapture(f"meta['n_input'] is {meta['n_input']}; 0 to {n_tokens} (the tokens) is allowed")
    rows = meta["top_tokens"]
    if (len(meta["tokens"]) != n_tokens or not all(isinstance(token, str) for token in meta["tokens"])
            or len(rows) != n_tokens
            or not all(isinstance(row, list) and len(row) == k and all(isinstance(t, str) for t in row)
                       for row in rows)):
        raise MalformedCapture(
            f"meta's tokens and top_tokens must be {n_tokens} strings and {n_tokens} lists of {k} strings "
            "(the arrays' sizes)"
        )
    return meta


def read(path: str | Path, max_bytes: int = MAX_CAPTURE_BYTES) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked metadata and arrays of a capture file; any malformed file raises one ValueError.

    Parameters
    ----------
    path : str or Path
        A file written by ``Capture.save``.
    max_bytes : int
        The most bytes its arrays may declare, decompressed.

    Returns
    -------
    meta : dict
        ``n_input``, ``model_name``, ``causal``, ``tokens``, ``top_tokens``, ``settings``.
    arrays : dict of str to ndarray
        ``token_ids``, ``special``, ``hidden_states``, ``ffn``, ``top_ids``, ``top_probs``
        (shapes as in :class:`~ecco_core.capture.Capture`).
    """
    max_bytes = whole("max_bytes", max_bytes, low=1)
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(name.removesuffix(".npy") for name in archive.namelist())
            if names != sorted(_ARRAYS):
                raise MalformedCapture(f"it holds {names[:10]}; exactly {sorted(_ARRAYS)} are expected")
            headers = {name: _header(archive, name) for name in _ARRAYS}
            _check_layout(headers, max_bytes)
            arrays = {}
            for name in _ARRAYS:
                with archive.open(name + ".npy") as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
        meta = json.loads(str(arrays.pop("meta")))
        return _check_meta(meta, *arrays["top_ids"].shape), arrays
    except FileNotFoundError:
        raise
    except MalformedCapture as error:
        raise ValueError(f"path {str(path)!r} is not a valid capture file: {error}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            KeyError, TypeError, NotImplementedError, RuntimeError) as error:
        raise ValueError(
            f"path {str(path)!r} is not a valid capture file: it is damaged or not one Capture.save wrote "
            f"({type(error).__name__}: {error})"
        ) from error
