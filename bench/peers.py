"""The published peers (ecco 0.1.2, inseq 0.7.1) in a virtual environment of their own.

They need transformers 4.x and older pins than this project, so benchmarks run
them in a separate interpreter: ``python bench/peers.py`` builds it once (about
two minutes) and prints its python path. ``../shared/peers/README.md`` lists the
exact versions and every gotcha.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEER_REQUIREMENTS = REPO.parent / "shared" / "peers" / "requirements-peers.txt"
PEER_VENV = REPO / ".cache" / "peers-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
_READY_MARK = PEER_VENV / ".installed"


def ensure_peer_env() -> Path:
    """Build the peers' virtual environment if needed; return its python."""
    if _READY_MARK.exists():
        return PEER_PYTHON
    if not PEER_REQUIREMENTS.exists():
        raise FileNotFoundError(f"peer requirements not found at {PEER_REQUIREMENTS}")
    venv.create(PEER_VENV, with_pip=True, clear=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # torch first: the CPU wheel on disk; every later install is made without deps so it stays.
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", "-r", str(PEER_REQUIREMENTS)], check=True)
    _READY_MARK.write_text("ok\n")
    return PEER_PYTHON


if __name__ == "__main__":
    print(ensure_peer_env())
    sys.exit(0)
