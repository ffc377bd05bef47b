"""Activations of a whole corpus on disk instead of in memory.

Probing 10,000 tokens of the causal default at every layer gathers 61 arrays
of 10,000 rows (the embeddings and 30 block outputs of width 576, 30 FFNs of
width 1536): 2.6 GB in float32, more than the model. An :class:`ActivationStore`
keeps them in a temporary folder under the model cache
(:func:`ecco_core.models.cache_dir` ``/ "activations"``), written batch by
batch through memory-mapped files and read back one representation at a
time, so memory holds one batch or one slice, never the corpus.

Precision: values are stored as float16 after a per-dimension affine map
(``stored = (value - shift) / scale``, with the shift and scale of the
first batch written), so a dimension with a large offset and a small spread
(Llama-style hidden states have a few) keeps float16's 11 significant bits
of its *spread*, not of its offset. That is finer than what probing uses:
its features are standardised and multiplied in bfloat16 (8 bits). Analyses
whose math is float64 throughout (CCA, SVCCA, PWCCA) would need
``dtype=np.float32``.

Lifetime: a store's folder is deleted when the store is closed, when the
last array reading from it is garbage collected, or when the interpreter
exits; a new store also deletes the folders that stores of processes no
longer running left behind (e.g. killed ones), so the folder stays bounded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from . import _checks as checks

#: Free disk space a store leaves untouched beyond its own files.
DISK_MARGIN_BYTES = 1 << 30

DTYPES = {"float16": np.float16, "float32": np.float32}


def store_root() -> Path:
    """The folder holding every store's temporary folder."""
    from .models import cache_dir

    return cache_dir() / "activations"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stores(root: Path | None = None) -> list[Path]:
    """Delete the store folders whose process no longer runs; returns the folders deleted."""
    root = store_root() if root is None else Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        pid = folder.name.split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class ActivationStore:
    """A temporary folder of on-disk arrays, deleted with the store (see the module's notes).

    Parameters
    ----------
    root : path, optional
        Where to make the folder; ``store_root()`` by default.
    dtype : {"float16", "float32"}, default "float16"
        How values are kept on disk.

    Examples
    --------
    >>> with ActivationStore() as store:
    ...     stack = store.array("ffn", (30, 10_000, 1536))
    ...     stack.write(slice(None), np.arange(500), values)   # values (30, 500, 1536)
    ...     layer = stack[3]                                    # float32 (10000, 1536)
    """

    def __init__(self, root: str | Path | None = None, *, dtype: str = "float16"):
        self.dtype = np.dtype(DTYPES[checks.choice("dtype", dtype, DTYPES)])
        root = store_root() if root is None else Path(root)
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_stores(root)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def array(self, name: str, shape: tuple[int, int, int]) -> StoredArray:
        """A new array of ``shape`` = (n_rows, n_tokens, width) in this store, to be filled by ``write``."""
        needed = int(np.prod(shape)) * self.dtype.itemsize
        free = shutil.disk_usage(self.folder).free
        if needed + DISK_MARGIN_BYTES > free:
            raise ValueError(
                f"the activation store needs {needed / 2**30:.1f} GiB in {self.folder} and only "
                f"{free / 2**30:.1f} GiB are free (keeping {DISK_MARGIN_BYTES / 2**30:.0f} GiB spare); "
                "probe fewer tokens or layers, or set ECCO_EXPLORER_CACHE to a larger disk"
            )
        return StoredArray(self, self.folder / f"{name}.{self.dtype.name}", shape)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def nbytes(self) -> int:
        """Bytes of the store's files on disk."""
        if self.closed:
            return 0
        return sum(path.stat().st_size for path in self.folder.iterdir())

    def close(self) -> None:
        """Delete the folder and its files now (arrays of this store can no longer be read)."""
        self._finalizer()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoredArray:
    """An array of shape (n_rows, n_tokens, width) on disk, read one row at a time as float32.

    ``array[i]`` reads row ``i`` (e.g. one layer) into a new float32 array;
    no mapping stays open between calls, so reading every row in turn keeps
    one row in memory, not the file. ``np.asarray(array)`` reads all of it.
    The array keeps its store (and so its files) alive.
    """

    def __init__(self, store: ActivationStore, path: Path, shape: tuple[int, int, int]):
        self.store, self.path = store, path
        self.shape = tuple(int(size) for size in shape)
        self.dtype = np.dtype(np.float32)
        self.stored_dtype = store.dtype
        n_rows, _, width = self.shape
        # Per (row, dimension): value = stored * scale + shift, fixed by the first write of each row.
        self.shift = np.zeros((n_rows, width), dtype=np.float32)
        self.scale = np.ones((n_rows, width), dtype=np.float32)
        self._scaled = np.zeros(n_rows, dtype=bool)
        np.memmap(path, dtype=self.stored_dtype, mode="w+", shape=self.shape).flush()

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        return int(np.prod(self.shape)) * self.stored_dtype.itemsize

    def write(self, row: int, tokens, values: np.ndarray) -> None:
        """Store ``values`` of shape (len(tokens), width) as row ``row``'s tokens ``tokens``."""
        values = np.asarray(values, dtype=np.float32)
        if self.stored_dtype == np.float16 and not self._scaled[row]:
            self.shift[row] = values.mean(0)
            spread = values.std(0)
            # A dimension constant in the first batch keeps a scale from its magnitude instead.
            self.scale[row] = np.where(spread > 0, spread, np.maximum(np.abs(self.shift[row]), 1.0))
            self._scaled[row] = True
        stored = (values - self.shift[row]) / self.scale[row]
        if self.stored_dtype == np.float16 and np.abs(stored).max(initial=0) >= np.finfo(np.float16).max:
            raise ValueError(
                f"activations of row {row} of {self.path.name} lie too far from the first batch's range to "
                "store as float16; use ActivationStore(dtype='float32')"
            )
        mapped = np.memmap(self.path, dtype=self.stored_dtype, mode="r+", shape=self.shape)
        try:
            mapped[row, tokens] = stored
            mapped.flush()
        finally:
            del mapped  # unmapped at once: written pages leave this process's memory

    def __getitem__(self, row) -> np.ndarray:
        if not isinstance(row, (int, np.integer)):
            raise checks.invalid("index", row, "one row number (a StoredArray is read one row at a time)", TypeError)
        n_rows, n_tokens, width = self.shape
        row = int(row) + (n_rows if row < 0 else 0)
        if not 0 <= row < n_rows:
            raise IndexError(f"row {row} is out of range for {n_rows} rows")
        if self.store.closed:
            raise ValueError(f"the activation store of {self.path.name} was closed")
        count = n_tokens * width
        stored = np.fromfile(self.path, dtype=self.stored_dtype, count=count, offset=row * count * self.stored_dtype.itemsize)
        values = stored.reshape(n_tokens, width).astype(np.float32)
        values *= self.scale[row]
        values += self.shift[row]
        return values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = np.stack([self[row] for row in range(self.shape[0])]) if self.shape[0] else np.empty(self.shape, np.float32)
        return array if dtype is None else array.astype(dtype)
