"""HTML -> the page's main text, with selectolax (the Lexbor parser): headings and paragraphs as blocks,
without scripts, styles, navigation, headers, footers, forms or hidden elements.

The main text is the page's <main> (or role="main") when it has one, else its single <article>, else
its <body>. Whitespace is collapsed as a browser shows it, except inside <pre>.
"""

from __future__ import annotations

import codecs
import re

from spanqa.errors import InputError
from spanqa.retrieval.formats.text import Extracted, clean, join_blocks, missing_reader

# Never text a reader wants: code, styling, chrome around the content, controls.
_DROPPED = (
    "script, style, noscript, template, head, nav, header, footer, aside, form, button, select, "
    "textarea, iframe, object, embed, svg, canvas, dialog, [hidden], [aria-hidden=true], "
    "[role=navigation], [role=banner], [role=contentinfo], [role=search], [role=complementary]"
)
_BLOCKS = frozenset(
    "address article blockquote caption center dd details div dl dt fieldset figcaption figure h1 h2 h3 "
    "h4 h5 h6 hr li main ol p pre section summary table tbody td tfoot th thead tr ul body".split()
)
_LINE_BREAKS = frozenset({"br"})
_CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"\s+")
# A <br> outside <pre>, kept through whitespace collapsing (the parser turns any NUL in the page into U+FFFD).
_BREAK = "\x00"
_AROUND_BREAK = re.compile(r" ?\x00 ?")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def read_html(data: bytes, name: str) -> Extracted:
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError:
        raise missing_reader("HTML", "selectolax") from None
    tree = LexborHTMLParser(_decode(data))
    for node in tree.css(_DROPPED):
        node.decompose()
    root = tree.css_first("main, [role=main]")
    if root is None:
        articles = tree.css("article")
        root = articles[0] if len(articles) == 1 else tree.body
    blocks = _blocks(root) if root is not None else []
    if not blocks:
        raise InputError(f"{name}: the HTML page has no text outside scripts, styles and navigation")
    return Extracted(join_blocks(blocks), "html")


def _decode(data: bytes) -> str:
    """The page as text: by its byte order mark, else its <meta charset>, else UTF-8, else windows-1252
    (what browsers assume for a page that declares nothing)."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, "replace")
    declared = _CHARSET.search(data[:4096])
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"), "replace")
        except LookupError:  # an unknown charset name: fall through to the guesses
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _blocks(root) -> list[str]:
    """The text of `root` as blocks: a block element (and a <br> inside <pre>) ends the current one."""
    blocks: list[str] = []
    current: list[str] = []
    pre_depth = 0

    def flush() -> None:
        text = "".join(current)
        current.clear()
        if pre_depth:
            lines = [line.rstrip() for line in text.split("\n")]
            text = "\n".join(lines).strip("\n")
        else:
            text = _AROUND_BREAK.sub("\n", _SPACES.sub(" ", text)).strip()
        text = clean(text)
        if text.strip():
            blocks.append(text)

    # An explicit stack instead of recursion: a page may nest elements thousands deep.
    stack: list[tuple[object, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        tag = node.tag
        if not entering:  # leaving a block element
            flush()
            if tag == "pre":
                pre_depth -= 1
            continue
        if tag == "-text":
            current.append(node.text(deep=False) or "")
            continue
        if tag in _LINE_BREAKS:
            current.append("\n" if pre_depth else _BREAK)
            continue
        if tag in _CELLS and any(piece.strip() for piece in current):
            current.append(" | ")  # cells of a row stay on one line, told apart
        if tag in _BLOCKS and tag not in _CELLS:
            flush()
            stack.append((node, False))
            if tag == "pre":
                pre_depth += 1
        children = list(node.iter(include_text=True))
        stack.extend((child, True) for child in reversed(children))
    flush()
    return blocks
