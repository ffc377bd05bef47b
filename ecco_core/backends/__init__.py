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
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

from .._heartbeat import heartbeat

BACKEND_NAMES = ("hooks", "nnsight", "ndif")
DEFAULT_NDIF_HOST = "https://api.ndif.us"
DEFAULT_QUEUE_TIMEOUT_S = 600.0
#: NDIF's statuses of a request that waits for its turn (nnsight's ``Status``); the queue timeout counts them.
WAITING = ("RECEIVED", "QUEUED", "PROVISIONING", "DEPLOYING")


class RemoteError(ConnectionError):
    """A request to NDIF failed: unreachable host, refused key, unserved model, server error.

    The message says what to do; it never holds the API key.
    """


class QueueTimeout(RemoteError):
    """NDIF kept a request waiting for its turn longer than the queue timeout; the request was given up."""


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
    came back (``torch.save`` of the saved values: what NDIF returns), and
    ``wire[i]`` the bytes NDIF sends for it: ``received[i]`` compressed as NDIF
    compresses a result (zstd level 6) when nnsight asks it to (its
    ``CONFIG.API.COMPRESS``, on by default), else ``received[i]``.
    """

    sent: list = field(default_factory=list)
    received: list = field(default_factory=list)
    wire: list = field(default_factory=list)

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


class _Turn:
    """A session's turn on a shared envoy tree (a re-entrant lock). While another thread's session holds it, this
    thread's listener (:func:`watching`) hears "QUEUED" about once a second, so a page shows the wait and its
    Stop can end it (an exception the listener raises leaves without the turn)."""

    def __init__(self):
        self._lock = threading.RLock()

    def __enter__(self):
        listener = getattr(_LISTENERS, "current", None)
        started = time.monotonic()
        while not self._lock.acquire(timeout=1.0):
            if listener is not None:
                listener("QUEUED", time.monotonic() - started)
        return self

    def __exit__(self, *exc_info) -> None:
        self._lock.release()


class _Envoys:
    """The one envoy tree of a model and the turn of its sessions, shared by every backend that runs the model
    (each browser session's NDIF key is its own backend): nnsight's interleaver runs one session at a time."""

    def __init__(self):
        self.envoy = None
        self.lock = _Turn()


_ENVOYS = weakref.WeakKeyDictionary()
_ENVOYS_LOCK = threading.Lock()


def _shared(model) -> _Envoys:
    with _ENVOYS_LOCK:
        if model not in _ENVOYS:
            _ENVOYS[model] = _Envoys()
        return _ENVOYS[model]


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
    served : torch.nn.Module, optional
        With ``remote="local"``: the model with weights that the simulated
        server runs, when ``model`` is a copy on the meta device (as on NDIF);
        see :func:`simulated`.
    queue_timeout : float, optional
        Seconds a request may wait in NDIF's queue before it is given up
        (:class:`QueueTimeout`); ``NDIF_QUEUE_TIMEOUT`` or 600 by default.
    """

    traced = True

    def __init__(self, model, tokenizer, *, remote: bool | str = False, host: str | None = None,
                 api_key: str | None = None, repo_id: str | None = None, served=None,
                 queue_timeout: float | None = None):
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
        self._served = model if served is None else served
        self.queue_timeout = float(queue_timeout if queue_timeout is not None
                                   else os.environ.get("NDIF_QUEUE_TIMEOUT", DEFAULT_QUEUE_TIMEOUT_S))
        self._paths = None
        self.lock = _shared(self._served).lock  # one envoy tree, one interleaver: one session at a time

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
        """The nnsight ``TransformersModel`` around the model, made once per model for every backend that runs it."""
        shared = _shared(self._served)
        with self.lock:
            if shared.envoy is None:
                import warnings

                from nnsight import TransformersModel

                with warnings.catch_warnings():  # nnsight warns of each BERT-style `output` submodule it renames
                    warnings.simplefilter("ignore")
                    placed = {"device": "meta"} if self._served.device.type == "meta" else {}  # NDIF: stay there
                    shared.envoy = TransformersModel(self._served, tokenizer=self._tokenizer, task=self.task, **placed)
            return shared.envoy

    @property
    def task(self) -> str:
        """The pipeline task nnsight keys the model by (part of NDIF's model key)."""
        architecture = type(self._model).__name__
        if architecture.endswith("ForCausalLM"):
            return "text-generation"
        return "fill-mask" if architecture.endswith(("ForMaskedLM", "ForPreTraining")) else "feature-extraction"

    def envoys(self, modules) -> list:
        """The envoys of ``modules`` (modules of the wrapped model, as the family table finds them).

        Found by each module's dotted path in the model (the same path in the
        served model, which has the same structure); a part that nnsight
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
            return _Remote(self.model_key(), host=self.host, api_key=self._api_key or "", blocking=True,
                           queue_timeout=self.queue_timeout)
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
        except RemoteError:  # ours, already worded (a queue timeout)
            raise
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
        """Note the size of what a session sent back (what NDIF would return) in the current ledger, and the
        bytes NDIF would send for it."""
        import io

        import torch

        if getattr(_LEDGERS, "current", None) is None:
            return
        buffer = io.BytesIO()
        torch.save(result, buffer)
        _note("received", buffer.tell())
        _note("wire", _wire_size(buffer.getvalue()))


#: How NDIF compresses a result when the request asks it to (ndif-team/ndif, ``save_result``: zstd level 6).
NDIF_RESULT_ZSTD_LEVEL = 6


def _wire_size(blob: bytes) -> int:
    """The bytes NDIF sends for a result that ``torch.save`` writes as ``blob``."""
    from nnsight import CONFIG

    if not CONFIG.API.COMPRESS:
        return len(blob)
    import zstandard

    return len(zstandard.ZstdCompressor(level=NDIF_RESULT_ZSTD_LEVEL).compress(blob))


@functools.lru_cache(maxsize=None)
def _simulated_class():
    from nnsight.intervention.backends.local import LocalSimulationBackend
    from nnsight.schema.request import RequestModel

    class Simulated(LocalSimulationBackend):
        """nnsight's ``remote="local"`` backend, noting the size of each request it serialises. While this machine
        runs the request, as NDIF would, the thread's listener (:func:`watching`) hears "RUNNING" about once a
        second, as from NDIF (:class:`_Watch`)."""

        def __call__(self, tracer):
            from nnsight.ndif import pull_env

            pull_env()
            _note("sent", len(RequestModel.serialize(tracer, compress=True)))
            listener = getattr(_LISTENERS, "current", None)
            started = time.monotonic()
            tell = None if listener is None else lambda fraction, message: listener(
                "RUNNING", time.monotonic() - started)
            with heartbeat(tell, 0.0, "", every_s=_TELL_EVERY_S):
                return super().__call__(tracer)

    return Simulated


_LISTENERS = threading.local()
#: Seconds between two tells of a request's status to its thread's listener, at most.
_TELL_EVERY_S = 1.0


@contextlib.contextmanager
def watching(listener) -> Iterator[None]:
    """Tell ``listener(status, waited_s)`` how this thread's NDIF requests made inside the block fare.

    ``status`` is NDIF's word for where a request is (nnsight's ``Status``:
    "RECEIVED", "QUEUED", "RUNNING", ...), ``waited_s`` the seconds since
    NDIF received it. While a request waits the listener is also
    called about once a second, so a caller can show the wait; an exception
    it raises (a Stop) ends the wait.
    """
    previous = getattr(_LISTENERS, "current", None)
    _LISTENERS.current = listener
    try:
        yield
    finally:
        _LISTENERS.current = previous


class _Watch:
    """Stands in for nnsight's status display on a remote request: each status goes to the thread's listener
    (:func:`watching`), and a request still waiting for its turn after ``timeout`` seconds is given up.

    nnsight wakes its receive loop every 0.1 s to call ``refresh`` while its display is ``enabled``;
    nnsight itself never gives up on a queued request.
    """

    enabled = True
    verbose = False

    def __init__(self, timeout: float, host: str):
        self.timeout, self.host = timeout, host
        self.status = "SENT"
        self.started = None  # NDIF's first answer: from then on the request waits on NDIF, not on the upload
        self.told = -1.0
        self.listener = getattr(_LISTENERS, "current", None)

    def update(self, response) -> None:
        status = str(getattr(response.status, "value", response.status))
        if status != "LOG":  # a transient server message, not a stage
            self.status = status
            if self.started is None:
                self.started = time.monotonic()
            self._tell()

    def refresh(self) -> None:
        waited = self._waited()
        if self.status in WAITING and waited > self.timeout:
            raise QueueTimeout(
                f"NDIF at {self.host} kept the request waiting ({self.status}) for more than {self.timeout:g} s, "
                "so it was given up: NDIF is busy or still starting the model; try again in a few minutes, "
                "or wait longer with NDIF_QUEUE_TIMEOUT (seconds)"
            )
        if waited - self.told >= 1.0:
            self._tell()

    def _waited(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def _tell(self) -> None:
        self.told = self._waited()
        if self.listener is not None:
            self.listener(self.status, self.told)


@functools.lru_cache(maxsize=None)
def _remote_class():
    from nnsight.intervention.backends.remote import RemoteBackend

    class Remote(RemoteBackend):
        """nnsight's remote backend, noting the size of each request it sends, its statuses watched (:class:`_Watch`)."""

        def __init__(self, *args, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_S, **kwargs):
            super().__init__(*args, **kwargs)
            self.display = _Watch(queue_timeout, self.host)

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


def with_key(lm, api_key: str | None):
    """``lm`` with its NDIF requests sent under ``api_key`` (None: ``NDIF_API_KEY``): a new LM, the rest shared.

    For a server whose users each bring their own key to one loaded model;
    ``""`` gives one that holds no key (what a cache shared by sessions keeps).
    """
    import copy
    import dataclasses

    if not lm.backend.traced:
        return lm
    keyed = copy.copy(lm.backend)
    keyed._api_key = api_key if api_key is not None else os.environ.get("NDIF_API_KEY")
    return dataclasses.replace(lm, backend=keyed)


def use(lm, backend, *, api_key: str | None = None, host: str | None = None, remote: bool | str | None = None):
    """``lm`` run through another backend: a new LM sharing the same model, tokenizer and name.

    >>> traced = use(lm, "nnsight", remote="local")   # every view serialised as for NDIF, run here
    """
    import dataclasses

    return dataclasses.replace(
        lm, backend=make(backend, lm.model, lm.tokenizer, name=lm.name, api_key=api_key, host=host, remote=remote)
    )


def simulated(lm, *, api_key: str | None = None):
    """``lm`` as NDIF serves it, with this machine standing in for NDIF: the offline twin of ``backend="ndif"``.

    What ``ec.load(lm.name, backend="ndif")`` gives (the model a copy on the
    meta device: its structure names the modules, nothing here can run it),
    except that each session is serialised as for NDIF and run by ``lm``'s own
    model (nnsight's ``remote="local"``). So a view that would not run on NDIF
    fails here as it would there, without any network.

    >>> served = simulated(lm)          # shares lm's weights; its own model holds none
    """
    import dataclasses

    import torch

    with torch.device("meta"):
        structure = type(lm.model)._from_config(lm.model.config, dtype=lm.model.dtype)
    structure.eval()
    structure.requires_grad_(False)
    return dataclasses.replace(lm, model=structure, backend=Traced(
        structure, lm.tokenizer, remote="local", api_key=api_key, repo_id=lm.name, served=lm.model,
    ))
