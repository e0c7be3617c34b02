from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackpainReportConfig(AppConfig):
    name = "backpain_report"
    verbose_name = _("Back pain report")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import bounces, checks  # noqa: F401  (checks registers the system checks)

        bounces.connect()  # bounces and complaints, when django-anymail is installed
