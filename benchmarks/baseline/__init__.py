"""A bare Django site: the baselines the app's pages are measured against (``make bench``).

Three views, each the least a Django site must do for the same job: a constant HTML page, a
template with a plain Django form and a CSRF token, and a form that is validated, INSERTed and
handed to a trivial Celery task with ``.delay()``.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
