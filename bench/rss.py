"""A process's resident set on Linux: reset its peak, read the peak since (for the memory benchmarks).

The kernel keeps the peak (``VmHWM``) itself, so a spike between two samples is never missed.
Each function takes the process id (``"self"``, this process, by default).
"""

from pathlib import Path


def _status_kb(field: str, pid: int | str) -> int:
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{status} has no {field}")


def reset_peak(pid: int | str = "self") -> int:
    """Reset the resident-set peak (``VmHWM``) to the current resident set; return that, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb("VmRSS", pid) * 1024


def peak_bytes(pid: int | str = "self") -> int:
    """The resident set's peak since the last :func:`reset_peak` (or the start), in bytes."""
    return _status_kb("VmHWM", pid) * 1024
