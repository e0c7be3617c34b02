"""``gunicorn benchmarks.baseline.wsgi`` — the bare site."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.baseline.settings")

application = get_wsgi_application()
