"""The app's configuration: at start-up it registers the checks, the bounce receiver, log levels."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackpainReportConfig(AppConfig):
    name = "backpain_report"
    verbose_name = _("Back pain report")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from . import bounces, checks  # noqa: F401  (checks registers the system checks)
        from .logs import loggers_quiet

        bounces.connect()  # bounces and complaints, when django-anymail is installed
        loggers_quiet(getattr(settings, "LOGGING", {}))  # WeasyPrint's "Step 1...7" lines off
