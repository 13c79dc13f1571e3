"""The report page: tables, figures and, beside each distilled spectrogram, a player for its sound.

Images and sounds are files beside ``report.html`` (relative links), so the folder is the report.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1280px; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table.results { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
table.results th, table.results td { border: 1px solid #ccc; padding: 4px 8px; text-align: center; }
table.results caption { text-align: left; font-weight: 600; padding-bottom: .4em; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
table.samples { border-collapse: collapse; }
table.samples th { text-align: right; padding-right: .6em; font-weight: 600; }
table.samples td { text-align: center; padding: 4px 6px; border-left: 1px solid #eee; }
table.samples img { image-rendering: pixelated; display: block; margin: 2px auto; height: 96px; }
table.samples img.spectrogram { width: 120px; height: 128px; }
audio { width: 160px; height: 28px; }
.note { color: #777; font-size: 14px; }
"""


@dataclass
class Sample:
    """One training sample on the page: an image per modality, and its sound when it has one."""

    images: list[tuple[str, str, str]]  # (modality, its kind, relative path)
    sound: str | None = None


@dataclass
class Section:
    """Everything shown for one distilled set."""

    anchor: str
    title: str
    summary: list[str]
    figures: list[tuple[str, str]]  # (caption, relative path)
    classes: list[tuple[str, list[Sample]]]
    notes: list[str] = field(default_factory=list)


def _sample_cell(sample: Sample) -> str:
    parts = [f"<img class='{html.escape(kind)}' src='{html.escape(path)}' alt='{html.escape(m)}' "
             f"title='{html.escape(m)}'>" for m, kind, path in sample.images]
    if sample.sound:
        parts.append(f"<audio controls preload='none' src='{html.escape(sample.sound)}'></audio>")
    return "<td>" + "".join(parts) + "</td>"


def render_section(section: Section) -> str:
    out = [f"<h2 id='{html.escape(section.anchor)}'>{html.escape(section.title)}</h2>"]
    out += [f"<p>{html.escape(line)}</p>" for line in section.summary]
    out += [f"<p class='note'>{html.escape(note)}</p>" for note in section.notes]
    for caption, path in section.figures:
        out.append(f"<figure><img src='{html.escape(path)}' alt='{html.escape(caption)}'>"
                   f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if section.classes:
        out.append("<h3>Samples, as networks train on them</h3><table class='samples'>")
        for name, samples in section.classes:
            out.append(f"<tr><th>{html.escape(name)}</th>" + "".join(map(_sample_cell, samples)) + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def render_page(title: str, intro: Sequence[str], tables: Sequence[str], sections: Sequence[Section]) -> str:
    """A complete HTML page; ``tables`` are HTML fragments (experiments.tables.to_html)."""
    body = [f"<h1>{html.escape(title)}</h1>", *(f"<p>{html.escape(line)}</p>" for line in intro)]
    if tables:
        body += ["<h2>Results</h2>", *tables]
    if sections:
        body.append("<h2>Distilled sets</h2><ul>")
        body += [f"<li><a href='#{html.escape(s.anchor)}'>{html.escape(s.title)}</a></li>" for s in sections]
        body.append("</ul>")
        body += [render_section(s) for s in sections]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
