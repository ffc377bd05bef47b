"""Whole corpora on disk: the activation store gives the in-memory results, and leaves nothing behind."""

import gc
import os

import numpy as np
import pandas as pd
import pytest
import torch

import ecco_core as ec
from ecco_core import probing, store

DEV = probing.UD_ENGLISH_EWT_DEV
QUIET = {"progress": lambda fraction, message: None}
COLUMNS = ["accuracy", "accuracy_std", "selectivity", "selectivity_std", "control_accuracy"]


@pytest.fixture
def root(tmp_path, monkeypatch):
    """Stores of this test go to a folder of its own."""
    folder = tmp_path / "activations"
    monkeypatch.setattr(store, "store_root", lambda: folder)
    return folder


def test_disk_store_holds_the_collected_activations_to_float16_precision(encoder, root):
    memory = probing.collect(encoder, DEV, n_tokens=300, store="memory", **QUIET)
    disk = probing.collect(encoder, DEV, n_tokens=300, store="disk", **QUIET)
    assert not memory.on_disk and disk.on_disk
    assert (disk.words, disk.tags, disk.hidden_indices, disk.ffn_blocks) == (
        memory.words, memory.tags, memory.hidden_indices, memory.ffn_blocks)
    for kept, stored in [(memory.hidden_states, disk.hidden_states), (memory.ffn, disk.ffn)]:
        assert stored.shape == kept.shape and stored.dtype == np.float32
        read = np.asarray(stored)
        np.testing.assert_array_equal(read[2], stored[2])
        # float16 keeps 11 significant bits of each value's distance from its dimension's shift
        shift, scale = stored.shift[:, None], stored.scale[:, None]
        assert (np.abs(read - kept) <= 2**-10 * np.abs(kept - shift) + 1e-4 * scale + 1e-6 * np.abs(kept)).all()
        assert np.abs(read - kept).max() > 0  # float16, not a copy
    # The files are float16, one value per token and dimension.
    files = sorted(path.name for path in disk.hidden_states.store.folder.iterdir())
    assert files == ["ffn.float16", "hidden_states.float16"]
    assert disk.hidden_states.store.nbytes() == 2 * (memory.hidden_states.size + memory.ffn.size)


def test_probes_on_disk_train_in_groups_with_the_same_draws_as_all_at_once(encoder, root, monkeypatch):
    data = probing.collect(encoder, DEV, n_tokens=400, layers=["embeddings", 1, 4], store="memory", **QUIET)
    options = dict(trials=2, epochs=3, lr=probing.LEARNING_RATES, **QUIET)
    at_once = ec.train_probes([data.hidden_states, data.ffn], data.tags, data.words, **options)
    # The same float32 values on disk (a float32 store keeps them exactly), in groups of 2 FFN widths.
    with store.ActivationStore(dtype="float32") as disk:
        stacks = []
        for name, array in [("hidden", data.hidden_states), ("ffn", data.ffn)]:
            stacks.append(disk.array(name, array.shape))
            for row in range(len(array)):
                stacks[-1].write(row, np.arange(array.shape[1]), array[row])
        monkeypatch.setattr(probing.training, "STORED_GROUP_BYTES", 2 * 400 * 1536 * 2)
        # the embeddings, blocks 1 and 4 and block 1's FFN, then block 4's FFN
        assert probing.training._groups(stacks, torch.bfloat16) == [[(0, [0, 1, 2]), (1, [0])], [(1, [1])]]
        grouped = ec.train_probes(stacks, data.tags, data.words, **options)
    np.testing.assert_array_equal(grouped.accuracy, at_once.accuracy)
    np.testing.assert_array_equal(grouped.control_accuracy, at_once.control_accuracy)
    assert grouped.lr == at_once.lr


def test_probe_table_through_the_disk_store_matches_memory_and_cleans_up(encoder, root, monkeypatch):
    options = dict(n_tokens=500, trials=2, epochs=4, **QUIET)
    memory = ec.probe_table(encoder, DEV, store="memory", **options).to_frame()
    monkeypatch.setattr(probing.training, "STORED_GROUP_BYTES", 3 * 500 * 1536 * 2)  # several groups
    disk = ec.probe_table(encoder, DEV, store="disk", **options).to_frame()
    pd.testing.assert_frame_equal(memory.drop(columns=COLUMNS), disk.drop(columns=COLUMNS))
    # float16 may flip a prediction near a decision boundary: allow one flipped test token per trial in the real
    # task and one in the control task, i.e. 1 / n_test on an accuracy (its mean and its ddof=0 std over trials)
    # and 2 / n_test on a selectivity (real minus control).
    n_test = probing.training._n_test(memory.attrs["n_tokens"])
    flips = pd.Series({"accuracy": 1, "accuracy_std": 1, "selectivity": 2, "selectivity_std": 2,
                       "control_accuracy": 1})[COLUMNS]
    moved = (memory[COLUMNS] - disk[COLUMNS]).abs().max()
    assert (moved <= flips / n_test + 1e-12).all(), (moved * n_test).to_dict()  # in test tokens
    assert root.is_dir() and list(root.iterdir()) == []  # the table's store is gone


def test_store_files_go_with_their_data_and_stale_ones_with_the_next_store(encoder, root, monkeypatch):
    data = probing.collect(encoder, DEV, n_tokens=50, layers=[0], store="disk", **QUIET)
    folder = data.ffn.store.folder
    assert folder.parent == root and folder.name.startswith(f"{os.getpid()}-") and folder.is_dir()
    del data
    gc.collect()
    assert not folder.exists()

    data = probing.collect(encoder, DEV, n_tokens=50, layers=[0], store="disk", **QUIET)
    data.close()
    assert not data.ffn.store.folder.exists()
    with pytest.raises(ValueError, match="was closed"):
        data.ffn[0]

    # A store left by a process that no longer runs (killed) is deleted by the next one.
    stale = root / "999999999-killed"
    stale.mkdir()
    (stale / "ffn.float16").write_bytes(b"\0" * 64)
    mine = root / f"{os.getpid()}-other"
    mine.mkdir()
    with store.ActivationStore():
        assert not stale.exists() and mine.exists()
    assert sorted(root.iterdir()) == [mine]


def test_store_refuses_what_the_disk_cannot_hold(root, monkeypatch):
    monkeypatch.setattr(store, "DISK_MARGIN_BYTES", 1 << 60)
    with store.ActivationStore() as disk, pytest.raises(ValueError, match="the activation store needs .* GiB"):
        disk.array("ffn", (30, 10_000, 1536))
    with pytest.raises(ValueError, match="dtype must be one of 'float16', 'float32'; got 'int8'"):
        store.ActivationStore(dtype="int8")


def test_auto_keeps_small_corpora_in_memory_and_checks_the_choice(encoder, root, monkeypatch):
    assert not probing.collect(encoder, CONLLU_SMALL, **QUIET).on_disk
    monkeypatch.setattr(probing.collection, "IN_MEMORY_BYTES", 1)
    assert probing.collect(encoder, CONLLU_SMALL, **QUIET).on_disk
    with pytest.raises(ValueError, match="store must be one of 'auto', 'disk', 'memory'; got 'ram'"):
        probing.collect(encoder, CONLLU_SMALL, store="ram")


CONLLU_SMALL = "# text = Cats sleep\n1\tCats\tcat\tNOUN\tNNS\t_\t2\tnsubj\t_\t_\n2\tsleep\tsleep\tVERB\tVBP\t_\t0\troot\t_\t_\n\n"
