"""Hostile and careless input to the library: every case is one clear error naming the argument.

The app's side (URL parameters, uploads, typed text) is in ``test_hostile_app.py``.
"""

import numpy as np
import pytest

import ecco_core as ec
from ecco_core.saliency import MAX_STEPS


@pytest.fixture(scope="module")
def paris(lm):
    return ec.capture(lm, "The capital of France is", answer=" Paris")


# ---------------------------------------------------------------- saliency
@pytest.mark.parametrize("method", [["x"], {"grad_x_input": 1}, None, 3])
def test_saliency_method_that_is_no_string_is_named(lm, paris, method):
    with pytest.raises(ValueError, match=r"method must be one of 'grad_x_input', .*; got "):
        ec.saliency(lm, paris, method=method)


@pytest.mark.parametrize(
    "steps, error", [(0, ValueError), (-3, ValueError), (10**6, ValueError), (2.5, TypeError), (True, TypeError),
                     ("20", TypeError)],
)
def test_absurd_integrated_gradients_steps_are_refused_before_any_work(lm, paris, steps, error):
    with pytest.raises(error, match=rf"steps must be a whole number from 1 to {MAX_STEPS}; got {steps!r}"):
        ec.saliency(lm, paris, method="integrated_gradients", steps=steps)


# ----------------------------------------------------------------- capture
@pytest.mark.parametrize("top_k, error", [(-5, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_sampling_top_k_out_of_range_is_named(lm, top_k, error):
    with pytest.raises(error, match=rf"top_k must be a whole number >= 1; got {top_k!r}"):
        ec.capture(lm, "The capital of France is", max_new_tokens=2, do_sample=True, top_k=top_k)


def test_a_given_answer_can_be_bounded_like_generation(lm):
    with pytest.raises(ValueError, match="answer is 500 tokens; max_answer_tokens allows at most 64"):
        ec.capture(lm, "The capital of France is", answer=" word" * 500, max_answer_tokens=64)
    assert ec.capture(lm, "The capital of France is", answer=" Paris", max_answer_tokens=64).n_generated == 1


# ----------------------------------------------------------------- loading
def test_a_folder_that_asks_for_remote_code_is_refused_before_any_import(tmp_path):
    import json
    import subprocess
    import sys

    marker = tmp_path / "ran"
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    done = subprocess.run(
        [sys.executable, "-c", f"import ecco_core as ec; ec.load({str(tmp_path)!r})"],
        input="y\ny\n", capture_output=True, text=True, timeout=120,
    )
    assert "needs its own Python code (config.json has an auto_map)" in done.stderr
    assert not marker.exists()


def test_a_missing_or_empty_local_folder_is_named_as_such(tmp_path):
    with pytest.raises(ValueError, match=r"not found as a local folder \(none by that name\) or in the local hub"):
        ec.load("no-such-folder/model")
    with pytest.raises(ValueError, match="the folder holds no readable config.json"):
        ec.load(str(tmp_path))


# ----------------------------------------------------------- capture files
@pytest.fixture(scope="module")
def saved(paris, tmp_path_factory):
    """The bytes of a real capture file."""
    path = tmp_path_factory.mktemp("saved") / "paris.npz"
    paris.save(path)
    return path.read_bytes()


def _npz(path, arrays, headers=None):
    """Write an npz of ``arrays``; ``headers`` maps a name to (shape, dtype) declared over a few bytes of data."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        for name, (shape, dtype) in (headers or {}).items():
            with archive.open(name + ".npy", "w") as member:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
                member.write(bytes(4096))
    return path


def _arrays_of(saved, tmp_path):
    path = tmp_path / "real.npz"
    path.write_bytes(saved)
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _damaged(saved, tmp_path, damage):
    """A damaged copy of a real capture file."""
    path = tmp_path / f"{damage}.npz"
    data = bytearray(saved)
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage.startswith("bit flip at "):
        at = int(len(data) * float(damage.removeprefix("bit flip at ")))
        data[at] ^= 0x10
    elif damage == "not a zip":
        data = b"hidden_states,ffn\n1,2\n"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a zip"]
                         + [f"bit flip at {where}" for where in (0.0, 0.001, 0.3, 0.7, 0.999)])
def test_a_damaged_capture_file_is_one_clear_error(saved, tmp_path, damage):
    path = _damaged(saved, tmp_path, damage)
    with pytest.raises(ValueError, match=rf"path '{path}' is not a valid capture file: "):
        ec.Capture.load(path)


def test_a_zip_bomb_is_refused_before_it_is_decompressed(saved, tmp_path):
    import tracemalloc

    arrays = _arrays_of(saved, tmp_path)
    n_tokens = len(arrays["token_ids"])
    bomb = {name: arrays.pop(name).shape for name in ("hidden_states", "ffn")}
    # 2**31 bytes of float32 declared, consistent with the rest, in a file of a few kB
    headers = {"hidden_states": ((2**17 + 1, n_tokens, 576 * 8), "<f4"), "ffn": ((2**17, n_tokens, 8), "<f4")}
    assert bomb  # the real shapes are replaced
    path = _npz(tmp_path / "bomb.npz", arrays, headers)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"is not a valid capture file: its arrays declare \d+ bytes once "
                                             r"decompressed; max_bytes allows 1073741824"):
            ec.Capture.load(path)
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("change, message", [
    ({"ffn": None}, r"it holds \['hidden_states', 'meta', 'special', 'token_ids', 'top_ids', 'top_probs'\]; "
                    r"exactly \['ffn', "),
    ({"extra": np.zeros(3)}, r"exactly \['ffn', 'hidden_states', 'meta'"),
    ({"special": np.zeros(3, bool)}, r"special declares shape \(3,\), which does not fit token_ids"),
    ({"ffn": np.zeros((2, 3), np.float32)}, r"ffn declares shape \(2, 3\) and dtype float32; 3 axes"),
    ({"token_ids": np.array(["a", "b"])}, r"token_ids declares shape \(2,\) and dtype <U1; 1 axes of kind 'iu'"),
    ({"meta": np.array("{not json")}, r"JSONDecodeError"),
    ({"meta": np.array("[1, 2]")}, r"meta is a JSON list; an object is expected"),
    ({"meta": np.zeros(2)}, r"meta declares shape \(2,\)"),
])
def test_a_crafted_capture_file_is_one_clear_error(saved, tmp_path, change, message):
    arrays = _arrays_of(saved, tmp_path)
    arrays.update(change)
    path = _npz(tmp_path / "crafted.npz", {name: array for name, array in arrays.items() if array is not None})
    with pytest.raises(ValueError, match=rf"path '{path}' is not a valid capture file: .*{message}"):
        ec.Capture.load(path)


@pytest.mark.parametrize("key, value, message", [
    ("tokens", ["only one"], r"meta's tokens and top_tokens must be 6 strings and 6 lists of"),
    ("n_input", 99, r"meta\['n_input'\] is 99; 0 to 6"),
    ("n_input", "3", r"meta\['n_input'\] is '3'; a JSON int is expected"),
    ("causal", None, r"meta\['causal'\] is None; a JSON bool"),
    ("settings", None, r"meta\['settings'\] is None; a JSON dict"),
])
def test_capture_metadata_is_checked_against_the_arrays(paris, saved, tmp_path, key, value, message):
    import json

    arrays = _arrays_of(saved, tmp_path)
    meta = json.loads(str(arrays["meta"]))
    assert len(meta["tokens"]) == paris.n_tokens == 6
    meta[key] = value
    path = _npz(tmp_path / "meta.npz", {**arrays, "meta": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match=rf"is not a valid capture file: {message}"):
        ec.Capture.load(path)


def test_a_real_capture_file_still_loads_and_a_bound_can_be_raised(paris, saved, tmp_path):
    path = tmp_path / "paris.npz"
    path.write_bytes(saved)
    again = ec.Capture.load(path)
    assert again.tokens == paris.tokens and np.array_equal(again.hidden_states, paris.hidden_states)
    with pytest.raises(ValueError, match=r"its arrays declare \d+ bytes once decompressed; max_bytes allows 1000"):
        ec.Capture.load(path, max_bytes=1000)
    with pytest.raises(ValueError, match=r"max_bytes must be a whole number >= 1; got 0"):
        ec.Capture.load(path, max_bytes=0)


# ----------------------------------------------------------------- probing
def test_collecting_stops_reading_a_treebank_once_it_has_enough_words(encoder):
    from ecco_core import probing

    treebank = probing.UD_ENGLISH_EWT_DEV.read_bytes()
    broken_tail = b"1\tnot a CoNLL-U line\n\n"
    with pytest.raises(ValueError, match=r"CoNLL-U line 3 has 2 tab-separated fields"):
        ec.read_conllu(b"# a comment\n\n" + broken_tail)
    data = probing.collect(encoder, treebank * 20 + broken_tail, n_tokens=300, progress=lambda f, m: None)
    assert len(data.tags) == 300  # the 36 MB and the malformed line after them were never parsed


def test_a_tiny_probing_corpus_warns_that_its_accuracies_are_chance(encoder):
    from ecco_core import probing

    three_words = "1\tCats\tcat\tNOUN\t_\t_\t2\tnsubj\t_\t_\n2\tsleep\tsleep\tVERB\t_\t_\t0\troot\t_\t_\n" \
                  "3\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_\n\n"
    with pytest.warns(UserWarning, match=r"each trial tests its probes on only 1 of the 3 tokens, so an accuracy "
                                         r"moves in steps of 100% and 1\.0 or 0\.0 may be chance; probe 302 tokens"):
        table = ec.probe_table(encoder, three_words, trials=1, epochs=1, layers=[0],
                               progress=lambda f, m: None).to_frame()
    assert set(table["accuracy"]) <= {0.0, 1.0}  # what the warning is about
    assert table.attrs["n_tokens"] == 3
    assert probing.small_corpus_warning(302) is None and probing.small_corpus_warning(301) is not None


# --------------------------------------------------------------- similarity
@pytest.mark.parametrize("scale", [1e300, 1e-300, 2.0**1000])
@pytest.mark.parametrize("method", ["cca", "svcca", "pwcca", "cka"])
def test_similarity_is_the_same_for_huge_or_tiny_inputs(method, scale):
    from ecco_core import similarity

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    Y = X @ rng.normal(size=(8, 5)) + 0.5 * rng.normal(size=(60, 5))
    score = getattr(similarity, method)
    expected = score(X, Y)
    assert 0.2 < expected < 1.0
    assert score(X * scale, Y) == pytest.approx(expected, abs=1e-9)
    assert score(X * scale, Y * scale) == pytest.approx(expected, abs=1e-9)
    matrix = similarity.similarity_matrix([X * scale, Y], [Y * scale], method=method)
    np.testing.assert_allclose(matrix.values[:, 0], [expected, 1.0], atol=1e-9)
