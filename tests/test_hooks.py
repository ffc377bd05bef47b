"""ecco_core.hooks: the one way to hook the shared model (thread-scoped, always removed)."""

import threading

import pytest
import torch

from ecco_core.hooks import Before, StopForward, first, hooked, on_first, replace_first


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _last_hidden(lm, ids):
    with torch.inference_mode():
        return lm.model.base_model(input_ids=ids, use_cache=False).last_hidden_state


def test_a_hook_acts_on_its_own_threads_passes_only(lm):
    ids = torch.tensor([lm.tokenizer("The keys to the cabinet")["input_ids"]])
    clean = _last_hidden(lm, ids)
    fired, other = [], {}

    def zero(hidden):
        fired.append(threading.get_ident())
        return torch.zeros_like(hidden)

    def other_session():
        other["hidden"] = _last_hidden(lm, ids)

    with hooked({lm.blocks[0]: on_first(zero)}):
        worker = threading.Thread(target=other_session)
        worker.start()
        worker.join()
        mine = _last_hidden(lm, ids)
    assert torch.equal(other["hidden"], clean)  # the other session's pass ran untouched
    assert fired == [threading.get_ident()] and not torch.allclose(mine, clean)


def test_hooks_are_removed_after_an_exception_and_stop_forward_ends_the_block_quietly(lm):
    ids = torch.tensor([lm.tokenizer("Hooks come and go")["input_ids"]])
    before = _hook_count(lm.model)

    def fail(module, args, output):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        with hooked({lm.blocks[1]: [Before(lambda module, args, kwargs: None), fail]}):
            assert _hook_count(lm.model) == before + 2
            _last_hidden(lm, ids)
    assert _hook_count(lm.model) == before

    seen, after = [], []

    def stop(module, args, output):
        seen.append(first(output).shape)
        raise StopForward

    with hooked({lm.blocks[0]: stop}):
        _last_hidden(lm, ids)
        after.append("ran")  # StopForward ends the with block here
    assert seen == [(1, ids.shape[1], lm.d_model)] and not after
    assert _hook_count(lm.model) == before


def test_a_before_hook_can_replace_the_input(lm):
    ids = torch.tensor([lm.tokenizer("The capital of France is")["input_ids"]])
    clean = _last_hidden(lm, ids)

    def zero_input(module, args, kwargs):
        if args:
            return (torch.zeros_like(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": torch.zeros_like(kwargs["hidden_states"])}

    with hooked({lm.blocks[0]: Before(zero_input)}):
        zeroed = _last_hidden(lm, ids)
    assert not torch.allclose(zeroed, clean)
    # removed on exit: the next pass is the model's own again
    assert torch.allclose(_last_hidden(lm, ids), clean)


def test_first_and_replace_first_keep_the_container():
    a, b = torch.zeros(2), torch.ones(2)
    for output in (a, (a, "cache"), [a, "cache"]):
        assert first(output) is a
        replaced = replace_first(output, b)
        assert first(replaced) is b and type(replaced) is type(output)
        assert replaced[1:] == output[1:] if isinstance(output, (tuple, list)) else replaced is b


def test_another_threads_hook_is_skipped_even_when_torch_calls_it_without_its_kwargs():
    """torch registers a hook with kwargs in two steps; a pass of another thread in between calls it with two
    arguments. The thread-scoped wrapper must skip it there, not raise (a concurrent capture failed on it)."""
    from ecco_core.hooks import _this_thread_only

    owner = threading.Thread(target=lambda: None)
    owner.start()
    owner.join()
    scoped = _this_thread_only(lambda module, args, kwargs: (args, kwargs), owner.ident)
    assert scoped(None, (1,)) is None and scoped(None, (1,), {}) is None
    assert _this_thread_only(lambda module, args, kwargs: kwargs, threading.get_ident())(None, (), {"a": 1}) == {"a": 1}
