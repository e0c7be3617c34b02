"""A plain Django form with the sign-up's fields (no crispy-forms, no custom cleaning)."""

from django import forms


class SignupForm(forms.Form):
    name = forms.CharField(max_length=100)
    email = forms.EmailField()
    consent = forms.BooleanField()
