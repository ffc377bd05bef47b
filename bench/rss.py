"""This process's resident set on Linux: reset its peak, read the peak since (for the memory benchmarks)."""

from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{_STATUS} has no {field}")


def reset_peak() -> int:
    """Reset the resident-set peak (``VmHWM``) to the current resident set; return that, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def peak_bytes() -> int:
    """The resident set's peak since the last :func:`reset_peak` (or the start), in bytes."""
    return _status_kb("VmHWM") * 1024
