"""The README's report excerpt, cut from a real run's report.md (never typed by hand).

    python scripts/readme_excerpt.py RUN            # rewrite the README's excerpt from RUN/report.md
    python scripts/readme_excerpt.py RUN --check    # exit 1 when the README's excerpt differs

RUN is a ``cnnlab lab`` run folder with Part A, made as tests/test_readme_excerpt.py makes it
(``cnnlab lab --parts A``, one thread, a fresh cache), so that the slow test can check it bit for bit.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- report-excerpt:start", "<!-- report-excerpt:end -->"
# which sections, and what of each: "text" = the heading and its first paragraph, "table" = the heading,
# the first table with its caption and the figure that follows it
KEEP = {"A-Q1": "text", "A-Q8": "table"}


def _section(md: str, qid: str) -> list[str]:
    m = re.search(rf"^### {re.escape(qid)}: .*?(?=^<a id=|\Z)", md, re.M | re.S)
    if not m:
        raise SystemExit(f"report.md has no section {qid}")
    return m.group(0).strip().split("\n")


def excerpt(report_md: str) -> str:
    out: list[str] = []
    for qid, what in KEEP.items():
        lines = _section(report_md, qid)
        out += [lines[0], ""]
        paras = "\n".join(lines[1:]).strip().split("\n\n")
        if what == "text":
            out += [next(p for p in paras if not p.startswith(("*", "|", "!["))) + " …", ""]
        else:
            i = next(i for i, p in enumerate(paras) if p.startswith("|"))
            for p in paras[max(i - 1, 0):i + 2]:
                out += [p, ""]
    return "\n".join(out).replace("\n\n\n", "\n\n").strip()


def machine() -> str:
    """The CPU the numbers depend on (its model and whether it runs bf16 natively: the digits study's
    extraction precision follows it), as recorded next to the excerpt."""
    import platform

    from cnnlab.precision import native_bf16_cpu

    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, native bf16: {'yes' if native_bf16_cpu() else 'no'}, 1 thread"


_BLOCK = re.compile(rf"{re.escape(START)} \(made on: (.*?)\) -->\n```markdown\n(.*?)\n```\n{re.escape(END)}", re.S)


def readme_block(readme: str) -> str:
    m = _BLOCK.search(readme)
    if not m:
        raise SystemExit(f"README.md has no excerpt between {START} (made on: …) --> and {END}")
    return m.group(2)


def readme_machine(readme: str) -> str:
    return _BLOCK.search(readme).group(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a cnnlab lab run folder holding report.md")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the README differs")
    args = ap.parse_args()
    new = excerpt((Path(args.run) / "report.md").read_text(encoding="utf-8"))
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    old = readme_block(readme)
    if args.check:
        print("README excerpt is up to date" if old == new else "README excerpt differs from the run")
        return 0 if old == new else 1
    m = _BLOCK.search(readme)
    block = f"{START} (made on: {machine()}) -->\n```markdown\n{new}\n```\n{END}"
    readme_path.write_text(readme[:m.start()] + block + readme[m.end():], encoding="utf-8")
    print(f"README excerpt rewritten from {args.run}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
