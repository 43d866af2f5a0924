"""Report sections and the Markdown/HTML writers.

Each part saves its sections as ``sections.json`` in its run folder (figure paths relative to that
folder). ``write_report`` gathers sections from run folders and writes ``report.md`` and a
self-contained-by-folder ``report.html`` (figures referenced by relative path, a table of contents
by question, every name that came from a file or folder HTML-escaped).
"""

from __future__ import annotations

import html
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.runs import atomic_write_text, read_json, to_jsonable, write_json


@dataclass
class Section:
    """One question of the practical (``qid`` like ``"A-Q8"``) with its text, tables and figures."""

    qid: str
    title: str
    blocks: list[dict] = field(default_factory=list)
    root: str = ""  # folder that figure paths are relative to (set when loaded from a run folder)

    def text(self, markdown: str) -> "Section":
        self.blocks.append({"text": markdown.strip()})
        return self

    def table(self, rows: list[dict[str, Any]], caption: str = "", floatfmt: str = ".4g") -> "Section":
        self.blocks.append({"table": to_jsonable(rows), "caption": caption, "floatfmt": floatfmt})
        return self

    def figure(self, path: str | os.PathLike, caption: str = "") -> "Section":
        # Absolute now: a relative path means "from the working directory", whatever --out was;
        # save_sections stores it relative to the run folder, write_report relative to the report.
        self.blocks.append({"figure": str(Path(path).resolve()), "caption": caption})
        return self

    @property
    def part(self) -> str:
        return self.qid.split("-", 1)[0]


def save_sections(run_root: str | os.PathLike, sections: list[Section]) -> Path:
    """Write ``sections.json`` in ``run_root``; figure paths are stored relative to it."""
    root = Path(run_root).resolve()
    out = []
    for s in sections:
        blocks = [{**b, "figure": os.path.relpath(_figure_file(s, b["figure"]), root)} if "figure" in b else b
                  for b in s.blocks]
        out.append({"qid": s.qid, "title": s.title, "blocks": blocks})
    return write_json(root / "sections.json", out)


def load_sections(run_root: str | os.PathLike) -> list[Section]:
    root = Path(run_root)
    p = root / "sections.json"
    if not p.exists():
        return []
    return [Section(d["qid"], d["title"], d["blocks"], str(root.resolve())) for d in read_json(p)]


def _figure_file(s: Section, stored: str) -> Path:
    """The file a figure block names: absolute as ``Section.figure`` stores it, or relative to the run
    folder the section was loaded from (``sections.json``)."""
    p = Path(stored)
    return p if p.is_absolute() else Path(s.root).resolve() / p


def link(target: str | os.PathLike, report_dir: str | os.PathLike) -> str:
    """The one way cnnlab writes a link to a file: a URL relative to ``report_dir`` (forward slashes,
    percent-encoded), so that spaces, '#', '%', '?' or non-ASCII letters in a folder or file name
    cannot cut it (a browser reads '#…' as a fragment) and the report folder can be moved whole."""
    rel = os.path.relpath(Path(target).resolve(), Path(report_dir).resolve())
    return urllib.parse.quote(Path(rel).as_posix())


# --------------------------------------------------------------------------- formatting
def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage for report text: ``pct(0.9371)`` → ``"93.7%"``; None or NaN → ``"n/a"``."""
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:.{digits}f}%"


def num(v: Any, fmt: str = ".3g") -> str:
    """A number for report text in ``fmt``; None, NaN or infinity → ``"n/a"``."""
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _fmt(v: Any, floatfmt: str) -> str:
    if isinstance(v, float):
        return format(v, floatfmt)
    return "" if v is None else str(v)


def _md_table(rows: list[dict], floatfmt: str) -> str:
    if not rows:
        return "_(empty table)_"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(_fmt(r.get(c), floatfmt)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    """Escape, then the little Markdown the sections use: **bold**, `code`, *italic*."""
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*\n]+)\*(?!\w)", r"<em>\1</em>", t)
    return t


_BULLET = re.compile(r"^\s*[-*] ")


def _text_html(md: str) -> str:
    parts = []
    for para in re.split(r"\n\s*\n", md.strip()):
        lines = para.splitlines()
        if all(re.match(r"\s*[-*] ", ln) for ln in lines):
            items = "".join("<li>" + _inline_html(_BULLET.sub("", ln)) + "</li>" for ln in lines)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline_html(' '.join(lines))}</p>")
    return "\n".join(parts)


def _html_table(rows: list[dict], floatfmt: str) -> str:
    if not rows:
        return "<p><em>(empty table)</em></p>"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), floatfmt))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    # wide tables (17 columns) scroll sideways inside their box instead of being cut off by the page
    return f'<div class="table-scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}nav{background:#f6f6f6;padding:.5em 1em;border-radius:6px}nav ul{columns:2}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#555}
h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}code{background:#f3f3f3;padding:0 3px}
.meta{color:#666;font-size:.9em}.table-scroll{max-width:100%;overflow-x:auto}.table-scroll table{margin:.2em 0}"""

PART_TITLES = {"A": "Part A: transfer learning by feature extraction", "B": "Part B: visualising networks",
               "C": "Part C: domain adaptation (DANN)", "D": "Part D: GANs (DCGAN, cDCGAN)"}


def _qkey(qid: str):
    """Report order: a part's "setup" section (which data, which budget) first, then its questions in
    number order, then its other sections (C-results, C-tSNE) by name, and what goes beyond the course last."""
    part, _, rest = qid.partition("-")
    m = re.match(r"Q(\d+)", rest)
    return (part, -1 if rest == "setup" else 1000 if rest == "beyond" else int(m.group(1)) if m else 999, rest)


def write_report(out_dir: str | os.PathLike, sections: list[Section], *, title: str = "cnnlab report",
                 intro: str = "") -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; figure paths become relative to it."""
    out_dir = Path(out_dir).resolve()
    sections = sorted(sections, key=lambda s: _qkey(s.qid))

    md = [f"# {title}", ""]
    if intro:
        md += [intro.strip(), ""]
    md += ["## Contents", ""]
    md += [f"- [{s.qid}: {s.title}](#{s.qid.lower()})" for s in sections]
    hb = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        hb.append(f'<div class="meta">{_text_html(intro)}</div>')
    toc = "".join(f'<li><a href="#{html.escape(s.qid.lower())}">{html.escape(s.qid)}: {html.escape(s.title)}</a></li>'
                  for s in sections)
    hb.append(f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>")
    part = None
    for s in sections:
        if s.part != part:
            part = s.part
            md += ["", f"## {PART_TITLES.get(part, 'Part ' + part)}"]
            hb.append(f"<h2>{html.escape(PART_TITLES.get(part, 'Part ' + part))}</h2>")
        md += ["", f'<a id="{s.qid.lower()}"></a>', f"### {s.qid}: {s.title}", ""]
        hb.append(f'<h3 id="{html.escape(s.qid.lower())}">{html.escape(s.qid)}: {html.escape(s.title)}</h3>')
        for b in s.blocks:
            if "text" in b:
                md += [b["text"], ""]
                hb.append(_text_html(b["text"]))
            elif "table" in b:
                if b.get("caption"):
                    md += [f"*{b['caption']}*", ""]
                    hb.append(f"<p><em>{_inline_html(b['caption'])}</em></p>")
                md += [_md_table(b["table"], b.get("floatfmt", ".4g")), ""]
                hb.append(_html_table(b["table"], b.get("floatfmt", ".4g")))
            elif "figure" in b:
                rel = link(_figure_file(s, b["figure"]), out_dir)
                md += [f"![{b.get('caption', '')}]({rel})", ""]
                if b.get("caption"):
                    md += [f"*{b['caption']}*", ""]
                hb.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(b.get("caption", ""))}">'
                          f"<figcaption>{_inline_html(b.get('caption', ''))}</figcaption></figure>")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(hb)}</body></html>\n")
    md_path = atomic_write_text(out_dir / "report.md", "\n".join(md) + "\n")
    html_path = atomic_write_text(out_dir / "report.html", page)
    return md_path, html_path
