"""The one way cnnlab sets up matplotlib: figures are drawn off-screen and saved to run folders."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend: cnnlab draws figures to save them, never
    to show them, and needs no display (``force=False``: a failure to switch is not an error)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
