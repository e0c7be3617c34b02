from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """The dev-only app holding ``backpain_populate`` and ``backpain_bench`` (no models)."""

    name = "benchmarks.devtools"
    label = "backpain_devtools"
    verbose_name = "Back pain report: development tools"
