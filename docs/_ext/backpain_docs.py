"""Sphinx extension for backpain_report's docs: the settings table, generated from the schema.

``backpain_report/config/schema.py`` declares every key of ``BACKPAIN_REPORT`` once (default,
type, validator, check id and its doc line). The ``backpain-settings`` directive renders those
declarations as the reference table, so the docs cannot drift from the code;
``tests/test_checks.py`` checks that the settings page uses it.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

HEADER = ["| key | default | meaning |", "| --- | --- | --- |"]


def settings_table() -> list[str]:
    """The settings reference table's Markdown lines: the header, then one row per setting in
    the schema's order."""
    from django.conf import settings

    if not settings.configured:  # the schema reads Django settings; texts as written
        settings.configure(USE_I18N=False)
    from backpain_report.config.schema import SETTINGS

    return [*HEADER, *(setting.readme_row() for setting in SETTINGS)]


class SettingsTable(SphinxDirective):
    """``backpain-settings``: the table of every ``BACKPAIN_REPORT`` key."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return self.parse_text_to_nodes("\n".join(settings_table()))


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("backpain-settings", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
