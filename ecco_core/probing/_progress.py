"""The progress callback shared by collection, training and the table."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[float, str], None]


def progress_bar(progress: Progress | None) -> tuple[Progress, Callable[[], None]]:
    """The caller's callback, or a tqdm bar by default; returns (update, close)."""
    if progress is not None:
        return progress, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=1000, desc="probing", leave=False)

    def update(fraction: float, message: str) -> None:
        bar.set_description(message, refresh=False)
        bar.update(int(round(fraction * 1000)) - bar.n)

    return update, bar.close
