"""cnnlab: the deep-learning-for-vision practical, end to end.

Parts mirror the practical: ``transfer`` (A), ``explain`` (B), ``adapt`` (C), ``generate`` (D).
Shared layers: ``data`` (datasets by name), ``models`` (registry + weights), ``runs`` (run folders),
``train`` (the one training loop) and ``report`` (markdown/HTML built from run folders).
"""

__version__ = "0.1.0"

from cnnlab.errors import CnnlabError  # noqa: E402,F401
