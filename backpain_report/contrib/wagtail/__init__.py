"""Wagtail integration (optional, ``pip install backpain-report[wagtail]``).

Add ``"backpain_report.contrib.wagtail"`` to ``INSTALLED_APPS`` (after ``"backpain_report"`` and
Wagtail's apps) and put :class:`~backpain_report.contrib.wagtail.blocks.ReportSignupBlock` in
any page's ``StreamField``: editors pick the article (and so its report) from a chooser, and the
page shows that article's sign-up form. Articles and reports are registered as snippets.
"""
