"""Progress bars: tqdm on a terminal, silent otherwise (CI logs, pipes), unless CNNLAB_PROGRESS=1."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    from cnnlab.distributed import is_main

    if not is_main():  # under torchrun, rank 0 shows the progress of all
        return False
    flag = os.environ.get("CNNLAB_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return sys.stderr.isatty()


def progress_bar(iterable=None, *, desc: str | None = None, total: int | None = None, disable: bool = False, **kw):
    return tqdm(iterable, desc=desc, total=total, disable=disable or not progress_enabled(), leave=False,
                dynamic_ncols=True, **kw)
