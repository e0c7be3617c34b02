from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackpainReportConfig(AppConfig):
    name = "backpain_report"
    verbose_name = _("Back pain report")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
