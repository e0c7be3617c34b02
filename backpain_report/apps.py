"""The app's configuration: at start-up it registers the checks, the bounce receiver, log levels."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackpainReportConfig(AppConfig):
    name = "backpain_report"
    verbose_name = _("Back pain report")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .delivery.logs import loggers_quiet
        from .page.pagecache import pages_invalidate_on_commit
        from .rights import bounces

        # An edited article, report or follow-up step (whether the report offers follow-ups
        # is the consent text) drops every stored article page (pagecache.py).
        models = ("Article", "Report", "FollowUpStep")
        for model in (self.get_model(name) for name in models):
            for name, signal in (("save", post_save), ("delete", post_delete)):
                signal.connect(
                    pages_invalidate_on_commit,
                    sender=model,
                    dispatch_uid=f"backpain_report.pages.{name}.{model.__name__}",
                )

        bounces.connect()  # bounces and complaints, when django-anymail is installed
        loggers_quiet(getattr(settings, "LOGGING", {}))  # WeasyPrint's "Step 1...7" lines off
