"""URLs of the relay queue's console pages (namespace ``queue``)."""
from django.urls import path

from smtpservice.console import queue_views

app_name = "queue"

urlpatterns = [
    path("", queue_views.QueueListView.as_view(), name="list"),
    path("send-test/", queue_views.TestMessageView.as_view(), name="send-test"),
    path("messages/<int:pk>/", queue_views.MessageDetailView.as_view(), name="message-detail"),
    *(
        path(f"messages/<int:pk>/{action}/", queue_views.MessageActionView.as_view(action=action), name=f"message-{action}")
        for action in queue_views.ACTIONS
    ),
]
