"""What `display` may send to the browser: a cell's rich output is untrusted, and JupyterLab runs
the scripts of the output of a cell the user ran (with the page's token and cookies).

Inert types pass (their decoded form). HTML is sanitised with nh3 (the Rust ammonia sanitiser):
an allow-list of tags and attributes, no scripts, event handlers, styles, frames, objects, forms,
no URL schemes but http, https and mailto (and data: images for <img>). Markdown is rendered to
HTML (markdown-it-py, CommonMark) and sanitised the same way, since its raw HTML would pass
through a Markdown renderer. An SVG is sent only as an <img> of a data: URL: a browser never runs
script or loads anything for an image. Every other type (application/javascript, widgets, plots
whose specs hold code) is refused."""

import base64
import binascii
import json

import nh3
from markdown_it import MarkdownIt

# Types whose renderers draw data and run nothing of it. LaTeX is typeset by MathJax, which
# JupyterLab runs with its "safe" extension (no \href to javascript:, no \style or \class).
INERT = ("text/plain", "text/latex", "image/png", "image/jpeg", "image/gif", "application/json", "application/pdf")
SANITISED = ("text/html", "text/markdown", "image/svg+xml")
URL_SCHEMES = {"http", "https", "mailto"}
DATA_IMAGES = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/webp;", "data:image/svg+xml;")

# Sanitising runs on the kernel's event loop (nh3 cleans about 8 MB/s, markdown-it-py renders about
# 0.4 MB/s): larger documents are refused rather than stall the kernel for seconds.
MAX_CHECKED_BYTES = {"text/html": 16 << 20, "text/markdown": 1 << 20}

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


class Refused(ValueError):
    """A display that must not reach the browser; the message is one line for the cell's stderr."""


def _text(payload):
    return base64.b64decode(payload, validate=True).decode("utf-8", "replace")


def _keep_url(tag, attribute, value):
    # nh3 has already checked the scheme against URL_SCHEMES plus "data"; data: is an image only.
    if attribute in ("href", "src", "cite") and value.strip().lower().startswith("data:"):
        return value if tag == "img" and attribute == "src" and value.strip().lower().startswith(DATA_IMAGES) else None
    return value


def sanitise_html(html):
    """HTML with nothing a browser would run, load as a document, or submit."""
    return nh3.clean(html, url_schemes=URL_SCHEMES | {"data"}, attribute_filter=_keep_url,
                     link_rel="noopener noreferrer", strip_comments=True)


def svg_as_image(svg_base64):
    return f'<img src="data:image/svg+xml;base64,{svg_base64}" alt="SVG image">'


def bundle(mime, payload, trusted=False):
    """The display_data `data` for `display --mime MIME` of base64 `payload` (bytes, as the
    session sent it). Raises Refused for a type that is not let through, ValueError for bad data."""
    size = len(payload) * 3 // 4
    if not trusted and size > MAX_CHECKED_BYTES.get(mime, size):
        raise Refused(f"display: {mime} of {size / 1e6:.1f} MB is too large to check (at most "
                      f"{MAX_CHECKED_BYTES[mime] >> 20} MiB); split it, or show it as text/plain")
    try:
        if trusted:
            return _as_is(mime, payload)
        if mime == "text/html":
            return {"text/html": sanitise_html(_text(payload))}
        if mime == "text/markdown":
            return {"text/html": sanitise_html(_markdown.render(_text(payload)))}
        if mime == "image/svg+xml":
            _text(payload)
            return {"text/html": svg_as_image(payload.decode("ascii"))}
        if mime in INERT:
            return _as_is(mime, payload)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"display: could not show the {mime} data: {e}") from None
    raise Refused(f"display: {mime} refused: the browser would run it, or draw it unchecked (shown here: "
                  f"{', '.join(INERT + SANITISED)}; SandboxKernel.trusted_rich_output allows any)")


def _as_is(mime, payload):
    # Jupyter's own convention: JSON types travel as JSON, other text as text, the rest as base64.
    if mime.startswith("text/") or mime.endswith("+xml") or mime == "application/javascript":
        return {mime: _text(payload)}
    if mime == "application/json" or mime.endswith("+json"):
        return {mime: json.loads(base64.b64decode(payload, validate=True))}
    base64.b64decode(payload, validate=True)
    return {mime: payload.decode("ascii")}
