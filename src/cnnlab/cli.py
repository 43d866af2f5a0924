"""The ``cnnlab`` command: a thin layer that parses arguments and calls one function per subcommand.

Each part adds its own subcommands through ``<part>/cli.py:add_commands(subparsers)`` so this file
stays small. Every :class:`~cnnlab.errors.CnnlabError` is printed as one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import traceback

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# (module with add_commands, what it adds). A part whose module is absent is simply not offered.
PART_CLIS = ("cnnlab.lab", "cnnlab.transfer.cli", "cnnlab.explain.cli", "cnnlab.adapt.cli", "cnnlab.generate.cli",
             "cnnlab.info")


DESCRIPTION = """\
cnnlab runs the deep-learning-for-vision practical end to end and writes a report:
(A) transfer learning with CNN features + SVM, (B) saliency maps, fooling images and class
visualisation, (C) domain adaptation with DANN, (D) DCGAN and conditional DCGAN.
The same commands work on your own images, models and domains."""

EPILOG = """\
start here:
  cnnlab lab                       the whole practical on embedded data (no download), report in runs/lab/
  cnnlab lab --data-root DATA      the same on the course's data (MNIST, BSDS500, 15 Scene, ImageNet images)
  cnnlab COMMAND --help            every option of one command, with its default"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option shows its default once: "(default: X)" is appended unless the help already names
    its default or there is none to show (no value, a switch that is off, an empty string)."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default in (None, False, "", argparse.SUPPRESS)
        if "default" in text or empty or not action.option_strings:
            return text
        return super()._get_help_string(action)


def add_common(p: argparse.ArgumentParser, *, out_default: str) -> None:
    """Flags every command shares."""
    g = p.add_argument_group("common")
    g.add_argument("--out", default=out_default, help=f"run folder to write (default: {out_default})")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/, BSDS500/, 15scene/, imagenet_val_25.npz")
    g.add_argument("--download", action="store_true", help="download missing torchvision datasets (online users)")
    g.add_argument("--dry-run", action="store_true", help="tiny and fast: a smoke test of the whole command")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its checkpoints")
    g.add_argument("--threads", type=int, default=None,
                   help="intra-op CPU threads (default: one per core that other processes leave idle, checked "
                        "between epochs; OMP_NUM_THREADS also sets it)")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="under torchrun, synchronise BatchNorm statistics across processes (SyncBatchNorm), so "
                        "that results do not depend on the number of processes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnlab", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to the terminal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in PART_CLIS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name or (e.name and mod_name.startswith(e.name + ".")):
                continue  # that part is not built yet
            raise
        mod.add_commands(sub)
    for child in _subparsers(parser):
        child.formatter_class = HelpFormatter  # every command shows its defaults the same way
    return parser


def _subparsers(parser: argparse.ArgumentParser):
    """Every (sub)command's parser below ``parser``. Each records itself as ``_parser``, so that an
    unknown flag is reported with the usage of the command it was given to (``cnnlab lab --bogus``)."""
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    command_parser = vars(args).pop("_parser", parser)
    if extra:
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


@contextlib.contextmanager
def _quiet_unless_main():
    """Under torchrun only rank 0 prints results (every rank computes them); errors still reach stderr."""
    from cnnlab.distributed import is_main

    if is_main():
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def main(argv: list[str] | None = None) -> int:
    from cnnlab import threads

    if "torch" not in sys.modules:  # OpenMP reads its wait policy once, when torch loads it
        threads.set_wait_policy()
    parser = build_parser()
    args = parse_args(parser, argv)
    # The run folder's log.txt gets INFO; the terminal only warnings unless --verbose.
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("cnnlab")
    logger.addHandler(console)
    logger.setLevel(logging.INFO)
    try:
        if not getattr(args, "func", None):
            parser.print_help()
            return 1
        from cnnlab.allocator import retain_freed_memory
        from cnnlab.distributed import (init_from_env, is_distributed, lost_a_peer, rank_prefix,
                                        wait_before_reporting)
        from cnnlab.runs import record_failure, runs_created

        if getattr(args, "retain_freed_memory", False):
            # only the commands whose training loops or extraction measured a gain (docs/DEVELOPING.md):
            # it changes malloc for the whole process, which a listing or `cnnlab report` has no use for
            retain_freed_memory()
        first_run = len(runs_created)
        try:
            if hasattr(args, "threads"):  # the commands that compute: pick threads for this machine's load
                if args.threads is not None and args.threads < 1:
                    raise CnnlabError(f"--threads {args.threads}: give a positive number of threads")
                logger.info("threads: %s", threads.choose(args.threads))
            init_from_env(getattr(args, "sync_bn", None))  # under torchrun: join the process group (no-op otherwise)
            with _quiet_unless_main():
                result = args.func(args)
        except CnnlabError as e:
            wait_before_reporting()
            print(f"error: {rank_prefix()}{e}", file=sys.stderr)
            record_failure(runs_created[first_run:], f"error: {e}")
            return 2
        except KeyboardInterrupt:
            print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
            record_failure(runs_created[first_run:], "interrupted (KeyboardInterrupt)")
            return 130
        except Exception as e:
            if is_distributed() and lost_a_peer(e):  # another process failed first and says why
                record_failure(runs_created[first_run:], f"stopped: another process failed ({type(e).__name__}: {e})")
                return 1
            record_failure(runs_created[first_run:], f"failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            if is_distributed():  # one line from the rank that failed (the traceback is in its log.txt)
                wait_before_reporting()
                print(f"error: {rank_prefix()}{type(e).__name__}: {e}", file=sys.stderr)
                return 1
            raise
        return int(result or 0)
    finally:
        threads.stop_following()
        # main() may run many times in one process (tests, notebooks): a handler left behind would
        # write to this call's stderr, possibly closed by then ("--- Logging error ---").
        logger.removeHandler(console)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
