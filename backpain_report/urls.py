"""The app's URLs: the articles, the sign-up, confirming, unsubscribing and downloads."""

from django.urls import path

from . import views

app_name = "backpain_report"

urlpatterns = [
    path("", views.DefaultArticleView.as_view(), name="home"),
    path("articles/", views.ArticleListView.as_view(), name="article_list"),
    path("articles/<slug:slug>/", views.ArticleDetailView.as_view(), name="article_detail"),
    path(
        "reports/<slug:slug>/cover-<int:edition>.png",
        views.ReportCoverView.as_view(),
        name="report_cover",
    ),
    path("signup/", views.SignupView.as_view(), name="signup"),
    path("views/", views.PageViewView.as_view(), name="page_view"),
    path("views/pixel.gif", views.PageViewView.as_view(), name="page_view_pixel"),
    path("signup/done/", views.SignupDoneView.as_view(), name="signup_done"),
    path("download/<str:token>/", views.DownloadView.as_view(), name="download"),
    path("confirm/<str:token>/", views.ConfirmView.as_view(), name="confirm"),
    path("unsubscribe/<str:token>/", views.UnsubscribeView.as_view(), name="unsubscribe"),
    path(
        "unsubscribe/<str:token>/one-click/",
        views.OneClickUnsubscribeView.as_view(),
        name="one_click_unsubscribe",
    ),
]
