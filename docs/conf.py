"""Sphinx configuration: backpain_report's documentation (furo theme, MyST Markdown).

Build it with ``make docs`` (warnings are errors); Read the Docs builds it from
``.readthedocs.yaml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

import backpain_report  # noqa: E402

project = "backpain_report"
author = "backpain_report developers"
copyright = "backpain_report developers"
release = backpain_report.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.intersphinx",
    "backpain_docs",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: heading anchors for in-page links (the README's `[x](#heading)` style); links to a
# heading on another page go through the `(label)=` targets each page declares.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "django": (
        "https://docs.djangoproject.com/en/stable/",
        "https://docs.djangoproject.com/en/stable/_objects/",
    ),
}
# The build must not need the network (make test runs it): intersphinx inventories are fetched
# only on Read the Docs (which sets READTHEDOCS) or where INTERSPHINX=1 is set.
if not (os.environ.get("READTHEDOCS") or os.environ.get("INTERSPHINX")):
    intersphinx_mapping = {}

html_theme = "furo"
html_title = f"backpain_report {release}"
html_static_path = ["_static"]
