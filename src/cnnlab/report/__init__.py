"""Reports built from run folders: sections (one per question) → report.md + report.html."""

from cnnlab.report.document import Section, link, load_sections, num, pct, save_sections, write_report

__all__ = ["Section", "link", "num", "pct", "save_sections", "load_sections", "write_report"]
