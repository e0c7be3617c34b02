"""The trivial task the baseline sign-up hands its row to."""

from celery import shared_task


@shared_task(name="baseline.signup_noted", ignore_result=True)
def signup_noted(signup_id: int) -> int:
    """Nothing to do: the baseline measures publishing, not processing."""
    return signup_id
