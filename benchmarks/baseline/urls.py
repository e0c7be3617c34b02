from django.urls import path

from . import views

urlpatterns = [
    path("", views.constant_page, name="constant"),
    path("form/", views.signup, name="form"),
    path("form/done/", views.done, name="done"),
]
