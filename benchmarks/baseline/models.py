"""One table: the baseline sign-up's INSERT."""

from django.db import models


class Signup(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email
