from django.apps import AppConfig


class BackpainReportWagtailConfig(AppConfig):
    name = "backpain_report.contrib.wagtail"
    label = "backpain_report_wagtail"
    verbose_name = "Back pain report for Wagtail"
