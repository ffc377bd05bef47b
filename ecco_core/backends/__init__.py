"""How a model is run: the local hook path (the default), or nnsight, here or on NDIF.

Every :class:`~ecco_core.models.LM` carries its backend (``lm.backend``), chosen
once at load; analyses read it and never take a backend argument of their own.

- :data:`HOOKS` (``"hooks"``): thread-scoped PyTorch hooks on the real Hugging
  Face modules (:mod:`ecco_core.hooks`), on this machine.
- ``"nnsight"``: the same model wrapped by nnsight; each view is ONE nnsight
  session (one request) whose body addresses modules by the paths of the
  family table and reduces on the spot (ranks, top-k, effects), so only what
  the view draws comes back. ``remote="local"`` serialises and deserialises
  every session exactly as NDIF's server would, with this project's modules
  hidden, and runs it here: the offline test of the remote path.
- ``"ndif"``: the same sessions shipped to NDIF (``remote=True``), for models
  larger than this machine. The API key comes from an argument or the
  ``NDIF_API_KEY`` environment variable; it is kept out of every ``repr``,
  message and log line.

>>> lm = ec.load(backend="nnsight")                        # local nnsight
>>> big = ec.load("meta-llama/Llama-3.1-70B", backend="ndif")  # remote; the weights stay on NDIF
>>> ec.capture(big, "The capital of France is", max_new_tokens=3)
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

BACKEND_NAMES = ("hooks", "nnsight", "ndif")
DEFAULT_NDIF_HOST = "https://api.ndif.us"


class RemoteError(ConnectionError):
    """A request to NDIF failed: unreachable host, refused key, unserved model, server error.

    The message says what to do; it never holds the API key.
    """


@dataclass(frozen=True)
class Hooks:
    """The local hook path: PyTorch hooks on this machine's copy of the model (the default)."""

    name: str = "hooks"
    traced: bool = False
    where: str = "this machine"


HOOKS = Hooks()


@dataclass(frozen=True)
class Ledger:
    """What the requests made inside :func:`ledger` sent and received, one entry per request.

    ``sent[i]`` is the serialised request's size in bytes (0 for a plain local
    nnsight run, which serialises nothing), ``received[i]`` the size of what
    came back (``torch.save`` of the saved values: what NDIF returns).
    """

    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.received)


_LEDGERS = threading.local()


@contextlib.contextmanager
def ledger() -> Iterator[Ledger]:
    """Count the requests this thread makes through nnsight inside the block, and their sizes."""
    record = Ledger()
    previous = getattr(_LEDGERS, "current", None)
    _LEDGERS.current = record
    try:
        yield record
    finally:
        _LEDGERS.current = previous


def _note(kind: str, size: int) -> None:
    record = getattr(_LEDGERS, "current", None)
    if record is not None:
        getattr(record, kind).append(int(size))


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class Traced:
    """nnsight around a model: every view is one session, run here, simulated, or on NDIF.

    Parameters
    ----------
    model : torch.nn.Module
        The Hugging Face model; for NDIF a copy on the meta device is enough
        (its structure names the modules, the weights stay on the server).
    tokenizer
    remote : bool or "local"
        False runs sessions here through nnsight; "local" serialises each one
        as NDIF would and runs it here; True ships it to ``host``.
    host : str, optional
        NDIF's address (``NDIF_HOST`` or https://api.ndif.us by default).
    api_key : str, optional
        NDIF's API key (``NDIF_API_KEY`` by default); never shown.
    repo_id : str, optional
        The hub name NDIF serves the model under (remote only).
    """

    traced = True

    def __init__(self, model, tokenizer, *, remote: bool | str = False, host: str | None = None,
                 api_key: str | None = None, repo_id: str | None = None):
        if remote not in (False, True, "local"):
            raise ValueError(f"remote must be False, True or 'local'; got {remote!r}")
        self.remote = remote
        self.name = "ndif" if remote is True else "nnsight"
        self.host = (host or os.environ.get("NDIF_HOST") or DEFAULT_NDIF_HOST).rstrip("/")
        if remote is True and not self.host.startswith(("http://", "https://")):
            raise ValueError(f"host must start with http:// or https://; got {self.host!r}")
        self._api_key = api_key if api_key is not None else os.environ.get("NDIF_API_KEY")
        self.repo_id = repo_id
        self._model, self._tokenizer = model, tokenizer
        self._envoy = None
        self._paths = None
        self.lock = threading.RLock()  # one envoy tree, one interleaver: one session at a time

    @property
    def where(self) -> str:
        """Where results are computed, in words a page can show."""
        if self.remote is True:
            return f"NDIF ({self.host})"
        return "this machine, through nnsight" + (" (serialised as for NDIF)" if self.remote == "local" else "")

    @property
    def has_key(self) -> bool:
        return bool(self._api_key)

    def __repr__(self) -> str:
        return f"Traced(name={self.name!r}, remote={self.remote!r}, host={self.host!r}, key={'set' if self._api_key else 'none'})"

    __str__ = __repr__

    # ------------------------------------------------------------ the envoy tree
    @property
    def envoy(self):
        """The nnsight ``TransformersModel`` around the model, made once."""
        with self.lock:
            if self._envoy is None:
                import warnings

                from nnsight import TransformersModel

                with warnings.catch_warnings():  # nnsight warns of each BERT-style `output` submodule it renames
                    warnings.simplefilter("ignore")
                    placed = {"device": "meta"} if self._model.device.type == "meta" else {}  # NDIF: stay there
                    self._envoy = TransformersModel(self._model, tokenizer=self._tokenizer, task=self.task, **placed)
            return self._envoy

    @property
    def task(self) -> str:
        """The pipeline task nnsight keys the model by (part of NDIF's model key)."""
        architecture = type(self._model).__name__
        if architecture.endswith("ForCausalLM"):
            return "text-generation"
        return "fill-mask" if architecture.endswith(("ForMaskedLM", "ForPreTraining")) else "feature-extraction"

    def envoys(self, modules) -> list:
        """The envoys of ``modules`` (modules of the wrapped model, as the family table finds them).

        Found by each module's dotted path in the model; a part that nnsight
        serves on every envoy (BERT's ``output`` submodule against ``.output``,
        the module's output) is where nnsight moves it, ``E_output``.
        """
        import inspect

        from nnsight.intervention.envoy import Envoy

        if self._paths is None:
            self._paths = {id(module): name for name, module in self._model.named_modules()}
        found = []
        for module in modules:
            envoy = self.envoy
            for part in filter(None, self._paths[id(module)].split(".")):
                served = inspect.isdatadescriptor(getattr(Envoy, part, None))
                envoy = getattr(envoy, Envoy.OVERLOAD_PREFIX + part if served else part)
            found.append(envoy)
        return found

    # ------------------------------------------------------------ requests
    def model_key(self) -> str:
        """NDIF's name for the model (nnsight's ``TransformersModel`` key), made without the hub."""
        import json

        from nnsight.modeling.transformers import TransformersModel
        from nnsight.util import to_import_path

        data = {"repo_id": self.repo_id, "revision": None, "task": self.task}
        return f"{to_import_path(TransformersModel)}:{json.dumps(data)}"

    def request(self):
        """The nnsight backend for one session (None: run it here as an ordinary nnsight session)."""
        if self.remote == "local":
            return _Simulated(self.envoy)
        if self.remote is True:
            if not self.repo_id:
                raise ValueError("repo_id must name the model NDIF serves (a hub name) to run it there")
            return _Remote(self.model_key(), host=self.host, api_key=self._api_key or "", blocking=True)
        _note("sent", 0)
        return None

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn a failed request into a :class:`RemoteError` that says what to do, the key left out."""
        if self.remote is not True:
            yield
            return
        import httpx
        from nnsight.intervention.backends.remote import RemoteError as NnsightRemoteError

        try:
            yield
        except NnsightRemoteError as error:
            raise RemoteError(self._explain(str(error))) from None
        except (OSError, httpx.HTTPError) as error:
            raise RemoteError(
                f"NDIF at {self.host} is unreachable ({type(error).__name__}: {_scrub(str(error), self._api_key)}); "
                "check the network or the host, or run on this machine instead"
            ) from None
        except Exception as error:  # the websocket client's own errors
            if getattr(error, "status_code", None) in (401, 403):  # the subscription was refused: the key
                raise RemoteError(self._explain(f"HTTP {error.status_code}")) from None
            if type(error).__module__.startswith("websocket"):
                raise RemoteError(
                    f"NDIF at {self.host} is unreachable ({type(error).__name__}); "
                    "check the network or the host, or run on this machine instead"
                ) from None
            raise

    def _explain(self, detail: str) -> str:
        detail = _scrub(detail, self._api_key)
        lowered = detail.lower()
        if "401" in lowered or "403" in lowered or "api key" in lowered or "unauthorized" in lowered:
            return (
                f"NDIF refused the API key ({detail}); set NDIF_API_KEY or give api_key= "
                "(keys from https://login.ndif.us)"
            )
        if "not found" in lowered or "not deployed" in lowered or "model" in lowered and "not" in lowered:
            return (
                f"NDIF does not serve {self.repo_id!r} now ({detail}); pick one of ecco_core.backends.served_models()"
            )
        return f"NDIF could not run the request ({detail})"

    def received(self, result) -> None:
        """Note the size of what a session sent back (what NDIF would return) in the current ledger."""
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(result, buffer)
        _note("received", buffer.tell())


@functools.lru_cache(maxsize=None)
def _simulated_class():
    from nnsight.intervention.backends.local import LocalSimulationBackend
    from nnsight.schema.request import RequestModel

    class Simulated(LocalSimulationBackend):
        """nnsight's ``remote="local"`` backend, noting the size of each request it serialises."""

        def __call__(self, tracer):
            from nnsight.ndif import pull_env

            pull_env()
            _note("sent", len(RequestModel.serialize(tracer, compress=True)))
            return super().__call__(tracer)

    return Simulated


@functools.lru_cache(maxsize=None)
def _remote_class():
    from nnsight.intervention.backends.remote import RemoteBackend

    class Remote(RemoteBackend):
        """nnsight's remote backend, noting the size of each request it sends."""

        def _serialize(self, tracer):
            blob = super()._serialize(tracer)
            _note("sent", len(blob))
            return blob

    return Remote


def _Simulated(envoy):
    return _simulated_class()(envoy)


def _Remote(*args, **kwargs):
    return _remote_class()(*args, **kwargs)


def served_models(host: str | None = None, timeout: float = 5.0) -> list[str]:
    """The hub names NDIF serves now (its ``/status``), or a :class:`RemoteError` saying it is unreachable."""
    import httpx

    host = (host or os.environ.get("NDIF_HOST") or DEFAULT_NDIF_HOST).rstrip("/")
    try:
        response = httpx.get(f"{host}/status", timeout=timeout)
        response.raise_for_status()
        deployments = response.json().get("deployments", {})
    except (httpx.HTTPError, OSError, ValueError) as error:
        raise RemoteError(
            f"NDIF at {host} is unreachable ({type(error).__name__}), so its model list cannot be read; "
            "check the network, or run on this machine instead"
        ) from None
    return sorted({entry.get("repo_id", name) for name, entry in deployments.items()
                   if entry.get("deployment_level") in ("HOT", "WARM")})


def check_choice(backend, remote=None) -> None:
    """Raise a ValueError naming what is allowed unless ``backend`` and ``remote`` make a backend."""
    if backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}; got {backend!r}")
    if remote not in (None, False, True, "local"):
        raise ValueError(f"remote must be False, True or 'local'; got {remote!r}")
    if backend == "hooks":
        if remote:
            raise ValueError("remote= needs backend='nnsight' or 'ndif'")
        return
    try:
        import nnsight  # noqa: F401
    except ImportError:
        raise ValueError(f"backend={backend!r} needs nnsight: pip install nnsight==0.8.1") from None


def make(backend, model, tokenizer, *, name: str, api_key: str | None = None, host: str | None = None,
         remote: bool | str | None = None):
    """The backend object for ``backend`` ("hooks", "nnsight" or "ndif"), around ``model``.

    ``remote`` overrides where nnsight sessions run (``"local"`` to simulate NDIF
    here); by default "nnsight" runs here and "ndif" on NDIF.
    """
    if isinstance(backend, (Hooks, Traced)):
        return backend
    check_choice(backend, remote)
    if backend == "hooks":
        return HOOKS
    if remote is None:
        remote = backend == "ndif"
    return Traced(model, tokenizer, remote=remote, host=host, api_key=api_key, repo_id=name)


def use(lm, backend, *, api_key: str | None = None, host: str | None = None, remote: bool | str | None = None):
    """``lm`` run through another backend: a new LM sharing the same model, tokenizer and name.

    >>> traced = use(lm, "nnsight", remote="local")   # every view serialised as for NDIF, run here
    """
    import dataclasses

    return dataclasses.replace(
        lm, backend=make(backend, lm.model, lm.tokenizer, name=lm.name, api_key=api_key, host=host, remote=remote)
    )
