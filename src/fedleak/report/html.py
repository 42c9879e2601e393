"""One self-contained HTML page: tables, images embedded as data URIs (each linked to its PNG beside the page),
no scripts and nothing fetched from elsewhere, so the page can be mailed or archived alone."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { background: #fde2e2; } .good { background: #e3f6e3; } .muted { color: #777; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; font-size: 0.85em; }
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell(value: Any, *, css: str = "") -> str:
    """A table cell: numbers right-aligned with 3 significant digits, ``None`` as a dash."""
    classes = [css] if css else []
    if isinstance(value, bool) or value is None:
        text = {True: "yes", False: "no", None: "–"}[value]
    elif isinstance(value, float):
        classes.append("num")
        text = f"{value:.3g}"
    elif isinstance(value, int):
        classes.append("num")
        text = str(value)
    else:
        text = escape(value)
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{text}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, css: Sequence[Sequence[str]] = ()) -> str:
    """A table of ``rows`` (values formatted by :func:`cell`; ``css[r][c]`` an optional class per cell)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        classes = css[r] if r < len(css) else ()
        body.append("<tr>" + "".join(cell(v, css=classes[c] if c < len(classes) else "")
                                     for c, v in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(path: str | Path, relative: str, caption: str = "") -> str:
    """The PNG at ``path`` embedded as a data URI, linked to ``relative`` (its name beside the page)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    figure = (f'<a href="{escape(relative)}"><img src="data:image/png;base64,{data}" alt="{escape(caption)}" '
              f'data-file="{escape(relative)}"></a>')
    return f"<figure>{figure}<figcaption>{escape(caption)}</figcaption></figure>" if caption else figure


def page(title: str, sections: Sequence[tuple[str, str]], *, intro: str = "") -> str:
    """The page: a title, an introduction (HTML) and (heading, HTML body) sections."""
    body = "".join(f'<section><h2 id="{escape(_anchor(h))}">{escape(h)}</h2>{content}</section>'
                   for h, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{intro}{body}</body></html>\n")


def _anchor(heading: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in heading.lower()).strip("-")
