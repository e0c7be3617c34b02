"""The three baseline views: constant page, form page, form POST (validate, INSERT, .delay())."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from .forms import SignupForm
from .models import Signup
from .tasks import signup_noted

# About the size of the article page's <head> and first paragraphs: a real page, not "ok".
CONSTANT_PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Baseline</title>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'></head><body>"
    "<main><h1>Back pain and muscle spasms</h1>"
    + "<p>A constant paragraph of text that stands for an article body.</p>" * 40
    + "</main></body></html>"
)


def constant_page(request: HttpRequest) -> HttpResponse:
    """A constant HTML page: the floor of any Django view behind the same middleware."""
    return HttpResponse(CONSTANT_PAGE)


def signup(request: HttpRequest) -> HttpResponse:
    """GET: the form and a CSRF token; POST: validate, INSERT one row, ``.delay()``, 303."""
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            row = Signup.objects.create(
                name=form.cleaned_data["name"], email=form.cleaned_data["email"]
            )
            signup_noted.delay(row.pk)
            response = HttpResponseRedirect(reverse("done"))
            response.status_code = 303
            return response
    else:
        form = SignupForm()
    return render(request, "baseline/form.html", {"form": form})


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Thank you.")
