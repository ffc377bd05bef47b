"""The converted copy of the causal default (``~/.cache/ecco-explorer``) repairs itself when damaged.

Every test works on a copy of that folder under ``tmp_path`` (``ECCO_EXPLORER_CACHE``
points there); the shared cache is never touched.
"""

import re
import shutil

import pytest

import ecco_core as ec
from ecco_core import models


@pytest.fixture(scope="module")
def healthy_cache(tmp_path_factory, lm):
    """A complete converted copy in a cache folder of its own (``lm`` made sure the shared one exists)."""
    root = tmp_path_factory.mktemp("healthy-cache")
    shared = models._smollm_folder()
    shutil.copytree(shared, root / shared.name)
    return root / shared.name


@pytest.fixture
def cached_copy(healthy_cache, tmp_path, monkeypatch):
    """The converted folder inside a fresh cache under ``tmp_path``, ready to be damaged."""
    monkeypatch.setenv("ECCO_EXPLORER_CACHE", str(tmp_path))
    folder = tmp_path / healthy_cache.name
    shutil.copytree(healthy_cache, folder)
    assert models._smollm_folder() == folder and models._cache_problem(folder) is None
    return folder


def _truncate_weights(folder):
    weights = folder / "model.safetensors"
    with weights.open("r+b") as file:
        file.truncate(weights.stat().st_size // 3)


def _corrupt_weights_header(folder):
    with (folder / "model.safetensors").open("r+b") as file:
        file.seek(8)
        file.write(b"#")  # the JSON header's opening brace


DAMAGES = {
    "truncated weights": (_truncate_weights, r"model\.safetensors is \d+ bytes, \d+ when it was written"),
    "deleted config.json": (lambda folder: (folder / "config.json").unlink(), r"config\.json is missing"),
    "missing marker": (lambda folder: (folder / "complete.json").unlink(),
                       r"its completion marker complete\.json is missing \(the conversion was interrupted"),
    "corrupt weights header": (_corrupt_weights_header, r"model\.safetensors does not read"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_each_damage_is_detected_and_named(cached_copy, damage):
    do_damage, problem = DAMAGES[damage]
    do_damage(cached_copy)
    assert re.fullmatch(problem + ".*", models._cache_problem(cached_copy))


# Converting costs ~20-60 s, and the repair is the same for every damage (each damage's detection and words are
# checked above): the two damages reported on a real machine, together, are repaired by one conversion, whose
# warning names the first the completion marker lists.
def test_a_damaged_copy_is_named_and_converted_again(cached_copy):
    for damage in ("truncated weights", "deleted config.json"):
        DAMAGES[damage][0](cached_copy)
    problem = DAMAGES["deleted config.json"][1]  # config.json comes before model.safetensors
    with pytest.warns(UserWarning, match=rf"copy of SmolLM2-135M-Instruct in .* is damaged: {problem}; "
                                         r"converting it again"):
        lm = ec.load()
    assert models._cache_problem(cached_copy) is None
    assert ec.capture(lm, "The capital of France is", max_new_tokens=2).generated_text == " Paris."
    assert [path.name for path in cached_copy.parent.iterdir()] == [cached_copy.name]  # nothing left over
