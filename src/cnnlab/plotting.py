"""The one way cnnlab sets up matplotlib: figures are drawn off-screen and saved to run folders."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend, unless the program already chose a
    backend (a notebook's inline one is kept: ``force=False``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
