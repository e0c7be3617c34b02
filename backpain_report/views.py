"""Pages: the articles, the sign-up (POST/redirect/GET), and unsubscribing."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.decorators import method_decorator
from django.utils.functional import SimpleLazyObject
from django.utils.http import http_date
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import ListView, TemplateView

from . import forms, selectors, site
from .conf import app_settings
from .delivery.emails import pdf_filename
from .delivery.tokens import (
    ConfirmState,
    DownloadState,
    DownloadToken,
    download_link_stands,
    read_confirm_token,
    read_download_token,
    read_unsubscribe_token,
)
from .forms import PLACE_OFFER, SignupForm, thanks_context
from .models import Article, Delivery
from .page import crossorigin, offer, pagecache, pageviews, seo, sources
from .report import covers, pdfstore
from .rights import throttling
from .rights.addresses import MAX_EMAIL_LENGTH
from .services import deliveries, subscribers

logger = logging.getLogger(__name__)


def see_other(viewname: str) -> HttpResponseRedirect:
    """POST/redirect/GET with 303, so a reload never re-submits the form."""
    response = HttpResponseRedirect(reverse(viewname))
    response.status_code = 303
    return response


def wants_json(request: HttpRequest) -> bool:
    """API-style callers (``Accept: application/json``) get JSON and status codes, not pages."""
    return "application/json" in request.headers.get("Accept", "")


def article_page_context(
    request: HttpRequest, article: Article, *, form: SignupForm | None = None
) -> dict[str, Any]:
    """The article page's context: the article, its offer, the form and what search engines
    and link previews read. ``form`` None: the unbound form, from :mod:`pagecache` when the
    app's own form template is in use."""
    context: dict[str, Any] = {"article": article}
    # Two forms: "form" after the article, "offer_form" in the offer block; a bound form (shown
    # again with its errors) takes the place it was posted from, the other is the unbound one.
    for key, place in (("form", ""), ("offer_form", PLACE_OFFER)):
        if form is None:
            context.update(_unbound_form(article.slug, place, key))
        elif form.place_name == place:
            context[key] = form
        else:  # the page shown with errors is this reader's: the other form keeps the source
            context[key] = SignupForm(article_slug=article.slug, place=place, source=form.source)
    page_url = seo.absolute_url(request, article.get_absolute_url())
    image_url = ""
    if article.report is not None:
        context["offer"] = offer.report_offer(article.report)
        image_url = seo.absolute_url(request, context["offer"].cover_url)
    context["canonical_url"] = page_url
    context["image_url"] = image_url
    context["structured_data"] = seo.json_ld(
        seo.article_structured_data(article, url=page_url, image_url=image_url)
    )
    return context


def _unbound_form(slug: str, place: str, key: str) -> dict[str, Any]:
    """The unbound form for ``place`` as ``key`` in the page's context, and its cached HTML
    as ``signup_form_html`` / ``offer_form_html`` when the app's own form template is in use."""

    def build() -> SignupForm:
        return SignupForm(article_slug=slug, place=place)

    # Built only if a (site's) template uses it: the page includes the cached HTML. The source
    # fields are filled in by the browser (signup.js), never here.
    context: dict[str, Any] = {key: SimpleLazyObject(build)}
    if forms.form_is_cacheable():  # the same for every reader: rendered once
        html_key = "offer_form_html" if place else "signup_form_html"
        context[html_key] = forms.signup_form_html(slug=slug, place=place)
    return context


class ArticleListView(ListView):
    template_name = "backpain_report/article_list.html"
    context_object_name = "articles"

    def get_queryset(self):
        return Article.objects.published()


class ArticleDetailView(TemplateView):
    """The article page: the same bytes for every reader, kept by :mod:`pagecache` and served
    ``public`` for ``PAGE_MAX_AGE``; views are counted by the page's beacon
    (:class:`PageViewView`)."""

    template_name = "backpain_report/article_detail.html"
    last_modified: int | None = None

    def get_article(self) -> Article:
        return selectors.article_published_get(slug=self.kwargs["slug"])

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        key = pagecache.page_key(request)
        page = pagecache.page_get(key) if key else None
        if page is pagecache.PER_READER:
            return pagecache.per_reader_response(super().get(request, *args, **kwargs))
        if not isinstance(page, pagecache.StoredPage):
            response = super().get(request, *args, **kwargs)
            with pagecache.ReaderWatch(request) as watch:
                response.render()  # type: ignore[attr-defined]
            reason = watch.reason(response)
            if reason:
                if key is not None:
                    pagecache.page_mark_per_reader(key, reason)
                return pagecache.per_reader_response(response)
            if key is None:
                return response
            page = pagecache.page_from_response(response, last_modified=self.last_modified)
            pagecache.page_store(key, page)
        return pagecache.page_response(request, page)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        article = self.get_article()
        edited = [article.updated_at] + ([article.report.updated_at] if article.report else [])
        self.last_modified = max(_seconds(max(edited)) or 0, pagecache.config_since())
        context = article_page_context(self.request, article, form=kwargs.pop("form", None))
        return super().get_context_data(**context, **kwargs)


class DefaultArticleView(ArticleDetailView):
    """The root of the include: the default article."""

    def get_article(self) -> Article:
        return selectors.article_default()


@method_decorator(never_cache, name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")  # Fetch Metadata instead (crossorigin.py)
class SignupView(View):
    """POST the form; GET shows it on a page of its own (and re-shows it with errors).

    No CSRF token: a browser's POST from another site is refused by :mod:`crossorigin` (a 403,
    nothing stored), unless that site is one of ``EMBED_ORIGINS``."""

    template_name = "backpain_report/signup.html"
    forbidden_template_name = "backpain_report/signup_forbidden.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        article = selectors.article_for_signup(slug=request.GET.get("article"))
        form = SignupForm(article_slug=article.slug if article else "")
        return render(request, self.template_name, self.card_context(form, article))

    @staticmethod
    def card_context(form: SignupForm, article: Article | None, **extra: Any) -> dict[str, Any]:
        """The context of the form's page of its own (``signup.html``)."""
        return {
            "form": form,
            "article": article,
            "offer_heading": offer.offer_heading(),
            **extra,
        }

    throttled_template_name = "backpain_report/signup_throttled.html"

    def done(self, request: HttpRequest) -> HttpResponse:
        """The one answer for every accepted sign-up: new, known, confirmed, unsubscribed,
        recently emailed or a bot's."""
        if wants_json(request):
            return JsonResponse({"status": "accepted"}, status=202)
        response = see_other("backpain_report:signup_done")
        origin = crossorigin.embed_origin(request)
        if origin:  # posted from another site's page: the done page links back there
            response["Location"] += "?" + urlencode({"from": origin})
        signup_done_cookie_set(response, request)
        return response

    def forbidden(self, request: HttpRequest, reason: str) -> HttpResponse:
        """A browser's sign-up from another site: refused, nothing stored."""
        logger.info("Sign-up refused: a cross-site request (%s); nothing recorded.", reason)
        if wants_json(request):
            return JsonResponse({"status": "forbidden"}, status=403)
        return render(request, self.forbidden_template_name, status=403)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        origin = crossorigin.embed_origin(request)
        if origin:  # an embedding site's script may read the JSON answer
            response["Access-Control-Allow-Origin"] = origin
            patch_vary_headers(response, ("Origin",))
        return response

    def invalid(self, request: HttpRequest, form: SignupForm) -> HttpResponse:
        """The article the form came from, again, with the form and its errors; the first
        wrong field has ``autofocus``, so the browser brings the reader there."""
        form.focus_first_error()
        article = selectors.article_for_signup_page(slug=request.POST.get("article"))
        if article is None or article.report is None:
            # No article, or one whose page has no form: the form on a page of its own.
            return render(request, self.template_name, self.card_context(form, article))
        context = article_page_context(request, article, form=form)
        return render(
            request,
            ArticleDetailView.template_name,
            {**context, "noindex": True, "form_has_errors": True},
            status=200,
        )

    def invalid_json(self, form: SignupForm) -> HttpResponse:
        """An API caller's form errors: a 400 with the errors, logged at INFO here rather than
        as a "Bad Request" WARNING by django.request (a reader's typo is no server problem)."""
        logger.info("Sign-up refused: the form has errors (%s).", ", ".join(sorted(form.errors)))
        response = JsonResponse({"status": "invalid", "errors": form.errors}, status=400)
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log's flag
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        refusal = crossorigin.signup_refusal(request)
        if refusal:
            return self.forbidden(request, refusal)
        # The source in the form (from the Referer without the script), so that the form shown
        # again with errors keeps it for the next POST.
        form = SignupForm(sources.data_with_source(request, request.POST))
        if form.is_bot:
            logger.info("Sign-up honeypot filled; nothing recorded.")
            return self.done(request)
        if not throttling.ip_allowed(throttling.client_ip(request)):
            if wants_json(request):
                return JsonResponse({"status": "throttled"}, status=429)
            return render(request, self.throttled_template_name, status=429)
        if not form.is_valid():
            if wants_json(request):
                return self.invalid_json(form)
            return self.invalid(request, form)
        article = selectors.article_ref_for_signup(
            slug=form.cleaned_data["article"], language=subscribers.signup_language()
        )
        if article is None:
            return render(
                request,
                self.template_name,
                self.card_context(form, None, unavailable=True),
                status=503,
            )
        # The same work for every address; the worker decides what this sign-up means.
        subscribers.signup_submit(
            name=form.cleaned_data["name"],
            email=form.cleaned_data["email"],
            article=article,
            ip=throttling.client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            source_url=request.build_absolute_uri(article.get_absolute_url()),
            source=form.source,
            followups=form.followups_agreed,
        )
        return self.done(request)


class ReportCoverView(View):
    """The cover of a report some published article offers, as a PNG (the article page's
    offer, ``og:image``). The edition is in the path: an older edition's URL redirects to
    the current one. Anyone may cache it for a day, and revalidate it by ``ETag``; a cover
    that cannot be rendered is a ``503`` no one caches."""

    max_age = 24 * 3600

    def get(self, request: HttpRequest, slug: str, edition: int) -> HttpResponse:
        report = selectors.report_offered_get(slug=slug)
        if edition != report.edition or not offer.cover_path_is_current(request.path, report):
            return HttpResponseRedirect(offer.cover_path(report))  # also for "cover-01.png"
        try:
            image = covers.report_cover(report)
        except Exception:  # a report the renderer cannot lay out: no picture, no 500
            logger.exception("Could not render the cover of report %s.", report.pk)
            response = HttpResponse(
                _("The cover is not available right now."), content_type="text/plain", status=503
            )
            response["Cache-Control"] = "no-store"
            response["Retry-After"] = "300"
            return response
        modified = _seconds(image.modified)
        conditional = get_conditional_response(request, etag=image.etag, last_modified=modified)
        if conditional is None:
            response = HttpResponse(image.data, content_type="image/png")
        else:
            response = conditional
        response["ETag"] = image.etag
        if modified is not None:
            response["Last-Modified"] = http_date(modified)
        response["Cache-Control"] = f"public, max-age={self.max_age}"
        return response


# A transparent 1x1 GIF: the <noscript> image that counts a view without JavaScript.
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


@method_decorator(csrf_exempt, name="dispatch")  # same-origin only, checked below
class PageViewView(View):
    """Counts a view of an article page: the page's beacon (``POST``, from ``signup.js``) or,
    without JavaScript, its ``<noscript>`` image (``GET``). Only requests from the site's own
    pages count; a ``HEAD``, a bot's User-Agent and a request from another site do not. The
    answer is the same whether or not the view was counted."""

    http_method_names = ["get", "head", "post"]  # a HEAD: the image's headers, no count

    def post(self, request: HttpRequest) -> HttpResponse:
        self.count(request, request.POST)
        response = HttpResponse(status=204)
        response["Cache-Control"] = "no-store"
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET":  # View answers a HEAD with this method too
            self.count(request, request.GET)
        response = HttpResponse(PIXEL_GIF, content_type="image/gif")
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def count(request: HttpRequest, data: Any) -> None:
        if not crossorigin.same_origin_only(request):
            return
        slug = data.get("article", "")
        article = selectors.article_ref_for_view(slug=slug) if isinstance(slug, str) else None
        if article is None:
            return
        pageviews.page_view_record(
            article=article,
            user_agent=request.headers.get("User-Agent", ""),
            source=sources.source_reported(request, data),
        )


#: The no-JS thank-you's cookie: the address as typed and the article's slug, signed, for the
#: done page only and for a few minutes. Never in a URL (logs, history, Referer) and never in
#: the article page, which is the same for everyone.
DONE_COOKIE = "bpr_signup_to"
DONE_COOKIE_SALT = "backpain_report.views.signup_done"
DONE_COOKIE_MAX_AGE = 600


def signup_done_cookie_set(response: HttpResponse, request: HttpRequest) -> None:
    """Give the done page what it names, for every accepted sign-up alike (a bot's too): the
    posted address as typed (cut to the longest address) and the posted article's slug."""
    email = request.POST.get("email", "")
    slug = request.POST.get("article", "")
    value = json.dumps([email.strip()[:MAX_EMAIL_LENGTH], slug[:200]])
    response.set_signed_cookie(
        DONE_COOKIE,
        value,
        salt=DONE_COOKIE_SALT,
        max_age=DONE_COOKIE_MAX_AGE,
        path=reverse("backpain_report:signup_done"),
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def signup_done_cookie_read(request: HttpRequest) -> tuple[str, str]:
    """The (address, article slug) of the done cookie; ("", "") when missing or forged."""
    raw = request.get_signed_cookie(
        DONE_COOKIE, default="", salt=DONE_COOKIE_SALT, max_age=DONE_COOKIE_MAX_AGE
    )
    try:
        email, slug = json.loads(raw) if raw else ("", "")
    except (ValueError, TypeError):
        return "", ""
    return (email, slug) if isinstance(email, str) and isinstance(slug, str) else ("", "")


@method_decorator(never_cache, name="dispatch")
class SignupDoneView(TemplateView):
    """The thank-you without JavaScript: the address the email goes to and the sender's, and
    a way back to the article and the site."""

    template_name = "backpain_report/signup_done.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        back = self.request.GET.get("from", "")
        back = back if back in crossorigin.embed_origins() else ""
        email, slug = signup_done_cookie_read(self.request)
        article = selectors.article_ref_for_signup(slug=slug) if slug else None
        return super().get_context_data(
            double_opt_in=app_settings.DOUBLE_OPT_IN,
            thanks=thanks_context(email),
            back_url=back,
            back_site=urlsplit(back).netloc,  # "www.example.org", as a reader knows the site
            article_url=article.get_absolute_url() if article else "",
            home_url=reverse("backpain_report:home"),
            site_url=site.site_url() + "/" if app_settings.SITE_URL else "",
            site_name=site.site_name(),
            **kwargs,
        )


@method_decorator(never_cache, name="dispatch")
class ConfirmView(View):
    """GET shows a "Confirm" button (link scanners confirm nothing); POST confirms once."""

    template_name = "backpain_report/confirm.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        return self.page(request, token, read_confirm_token(token).state)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        checked = read_confirm_token(token)
        subscriber = checked.subscriber  # set for every state but INVALID and REVOKED
        if checked.state is ConfirmState.VALID and subscriber is not None:
            if subscribers.subscriber_confirm(subscriber=subscriber):
                return self.page(request, token, "confirmed")
            # Confirmed or unsubscribed meanwhile (another tab, a second click): say which.
            return self.page(request, token, read_confirm_token(token).state)
        if checked.state is ConfirmState.EXPIRED and subscriber and request.POST.get("resend"):
            if throttling.address_allowed(subscriber.email_canonical):
                subscribers.confirmation_fresh(subscriber=subscriber)
            return self.page(request, token, "resent")
        return self.page(request, token, checked.state)

    def page(self, request: HttpRequest, token: str, state: Any) -> HttpResponse:
        name = state.value if isinstance(state, ConfirmState) else state
        status = 400 if state is ConfirmState.INVALID else 200
        return render(
            request,
            self.template_name,
            {"token": token, "state": name, "double_opt_in": app_settings.DOUBLE_OPT_IN},
            status=status,
        )


@method_decorator(never_cache, name="dispatch")
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
        subscribers.subscriber_unsubscribe(subscriber_id=subscriber_id)
        return render(request, self.done_template_name)


_Response = TypeVar("_Response", bound=HttpResponseBase)


class DownloadView(View):
    """A reader's PDF from a signed, expiring, revocable link; throttled, served from storage.

    The link is checked first (400/410 before any file is touched), then counted per link and
    per client IP (``THROTTLE_DOWNLOAD``). The PDF is the one stored at send time, or rendered
    and stored on the first request (then the link is re-checked: one revoked or erased during
    the render gets a 410 and keeps no file); ``ETag``/``Last-Modified`` make a re-open a 304.
    It is always the report's current edition, named by it (see :func:`pdf_filename`).

    A ``HEAD`` (mail scanners send them) gets the headers a ``GET`` would, from the stored file
    if there is one; it never renders, records no download and is counted per client IP only,
    so scanners cannot use up a reader's downloads.
    """

    template_name = "backpain_report/download_unavailable.html"
    throttled_template_name = "backpain_report/download_throttled.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        checked = self.check(request, token)
        if isinstance(checked, HttpResponse):
            return checked
        delivery = checked.delivery
        assert delivery is not None  # a valid token's
        if not throttling.download_link_allowed(delivery.pk):
            return self.throttled(request)
        try:
            stored = pdfstore.delivery_pdf_get(
                delivery=delivery,
                language=checked.language,
                still_wanted=lambda: download_link_stands(delivery),
            )
        except pdfstore.PdfNoLongerWanted:  # revoked or erased while it rendered: no file kept
            return self.unavailable(request, DownloadState.REVOKED)
        response = self.conditional(request, stored)
        if response is None:
            body = stored.read()
            response = HttpResponse(body, content_type="application/pdf")
            self.describe(response, delivery, len(body))
            deliveries.delivery_downloaded(delivery=delivery)
        return self.finish(response, stored)

    def head(self, request: HttpRequest, token: str) -> HttpResponseBase:
        checked = self.check(request, token)
        if isinstance(checked, HttpResponse):
            return checked
        delivery = checked.delivery
        assert delivery is not None  # a valid token's
        try:
            stored = pdfstore.delivery_pdf_find(delivery, language=checked.language)
        except Exception:  # a sick storage: answer as if nothing were stored
            logger.warning("Private storage unreadable for delivery %s", delivery.pk, exc_info=True)
            stored = None
        if stored is None:
            # Not stored yet, and a HEAD never costs a render: its length is unknown. A streaming
            # response, so no middleware adds a (wrong) Content-Length.
            unknown = StreamingHttpResponse((), content_type="application/pdf")
            self.describe(unknown, delivery, None)
            return self.finish(unknown, None)
        response = self.conditional(request, stored)
        if response is None:
            response = HttpResponse(content_type="application/pdf")
            self.describe(response, delivery, stored.size())
        return self.finish(response, stored)

    def check(self, request: HttpRequest, token: str) -> DownloadToken | HttpResponse:
        """The link's delivery and language, or the answer for a throttled client or a bad
        link."""
        if not throttling.download_ip_allowed(throttling.client_ip(request)):
            return self.throttled(request)
        checked = read_download_token(token)
        if checked.state is not DownloadState.VALID or checked.delivery is None:
            return self.unavailable(request, checked.state)
        return checked

    @staticmethod
    def conditional(request: HttpRequest, stored: pdfstore.StoredPdf) -> HttpResponse | None:
        """A 304 when the client's copy is current, else None."""
        return get_conditional_response(
            request, etag=stored.etag, last_modified=_seconds(stored.modified)
        )

    @staticmethod
    def describe(response: HttpResponseBase, delivery: Delivery, length: int | None) -> None:
        """The PDF's own headers (``length`` None: unknown, none is sent)."""
        if length is not None:
            response["Content-Length"] = str(length)
        response["Content-Disposition"] = f'inline; filename="{pdf_filename(delivery)}"'

    @staticmethod
    def finish(response: _Response, stored: pdfstore.StoredPdf | None) -> _Response:
        """The headers every answer with (or about) the PDF carries."""
        if stored is not None:
            response["ETag"] = stored.etag
            if stored.modified is not None:
                response["Last-Modified"] = http_date(_seconds(stored.modified))
        # The browser may keep it but must ask again (a revoked link then stops working).
        response["Cache-Control"] = "private, no-cache"
        response["X-Robots-Tag"] = "noindex"
        return response

    def unavailable(self, request: HttpRequest, state: DownloadState) -> HttpResponse:
        status = 400 if state is DownloadState.INVALID else 410
        response = render(request, self.template_name, {"state": state.value}, status=status)
        response["X-Robots-Tag"] = "noindex"
        # Not for a shared cache either (one keeps a 410 by default): a link refused because
        # its reader unsubscribed works again once they sign up again.
        response["Cache-Control"] = "private, no-cache"
        return response

    def throttled(self, request: HttpRequest) -> HttpResponse:
        response = render(request, self.throttled_template_name, status=429)
        response["X-Robots-Tag"] = "noindex"
        response["Cache-Control"] = "private, no-store"
        return response


def _seconds(moment: datetime.datetime | None) -> int | None:
    """A timestamp at HTTP's 1 s resolution."""
    return int(moment.timestamp()) if moment else None


@method_decorator(csrf_exempt, name="dispatch")
class OneClickUnsubscribeView(View):
    """RFC 8058: mail clients POST ``List-Unsubscribe=One-Click`` here, without cookies."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        subscriber_id = read_unsubscribe_token(token)
        if subscriber_id is None:
            return HttpResponseBadRequest(_("Invalid unsubscribe link."), content_type="text/plain")
        subscribers.subscriber_unsubscribe(subscriber_id=subscriber_id)
        return HttpResponse(_("You are unsubscribed."), content_type="text/plain")
