"""Pages: the articles, the sign-up (POST/redirect/GET), and unsubscribing."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import ListView, TemplateView

from . import selectors, services, subscriptions
from .forms import SignupForm
from .models import Article
from .tokens import read_unsubscribe_token

logger = logging.getLogger(__name__)


def see_other(viewname: str) -> HttpResponseRedirect:
    """POST/redirect/GET with 303, so a reload never re-submits the form."""
    response = HttpResponseRedirect(reverse(viewname))
    response.status_code = 303
    return response


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class ArticleListView(ListView):
    template_name = "backpain_report/article_list.html"
    context_object_name = "articles"

    def get_queryset(self):
        return Article.objects.published()


class ArticleDetailView(TemplateView):
    template_name = "backpain_report/article_detail.html"

    def get_article(self) -> Article:
        return selectors.article_published_get(slug=self.kwargs["slug"])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        article = self.get_article()
        form = kwargs.pop("form", None) or SignupForm(article_slug=article.slug)
        return super().get_context_data(article=article, form=form, **kwargs)


class DefaultArticleView(ArticleDetailView):
    """The root of the include: the default article."""

    def get_article(self) -> Article:
        return selectors.article_default()


class SignupView(View):
    """POST the form; GET shows it on a page of its own (and re-shows it with errors)."""

    template_name = "backpain_report/signup.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        article = selectors.article_for_signup(slug=request.GET.get("article"))
        form = SignupForm(article_slug=article.slug if article else "")
        return render(request, self.template_name, {"form": form, "article": article})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SignupForm(request.POST)
        if form.is_bot:
            logger.info("Sign-up honeypot filled; nothing recorded.")
            return see_other("backpain_report:signup_done")
        if not form.is_valid():
            article = selectors.article_for_signup(slug=request.POST.get("article"))
            return render(request, self.template_name, {"form": form, "article": article})
        article = selectors.article_for_signup(slug=form.cleaned_data["article"])
        if article is None:
            return render(
                request,
                self.template_name,
                {"form": form, "article": None, "unavailable": True},
                status=503,
            )
        services.subscriber_signup(
            name=form.cleaned_data["name"],
            email=form.cleaned_data["email"],
            article=article,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            source_url=request.build_absolute_uri(article.get_absolute_url()),
        )
        return see_other("backpain_report:signup_done")


class SignupDoneView(TemplateView):
    template_name = "backpain_report/signup_done.html"


class UnsubscribeView(View):
    """GET shows a button (mail scanners follow links); POST unsubscribes."""

    template_name = "backpain_report/unsubscribe.html"
    done_template_name = "backpain_report/unsubscribe_done.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        if read_unsubscribe_token(token) is None:
            return render(request, self.template_name, {"invalid": True}, status=400)
        return render(request, self.template_name, {"token": token})

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        subscriber_id = read_unsubscribe_token(token)
        if subscriber_id is None:
            return render(request, self.template_name, {"invalid": True}, status=400)
        subscriptions.subscriber_unsubscribe(subscriber_id=subscriber_id)
        return render(request, self.done_template_name)


@method_decorator(csrf_exempt, name="dispatch")
class OneClickUnsubscribeView(View):
    """RFC 8058: mail clients POST ``List-Unsubscribe=One-Click`` here, without cookies."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        subscriber_id = read_unsubscribe_token(token)
        if subscriber_id is None:
            return HttpResponseBadRequest("Invalid unsubscribe link.", content_type="text/plain")
        subscriptions.subscriber_unsubscribe(subscriber_id=subscriber_id)
        return HttpResponse("You are unsubscribed.", content_type="text/plain")
