"""Whether progress bars can be drawn (both engines' runs and the evaluations draw them with tqdm when it and rich
are installed)."""

from __future__ import annotations


def has_progress_bar() -> bool:
    """True when tqdm and rich are importable (they come with ``stable-baselines3[extra]``)."""
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True
