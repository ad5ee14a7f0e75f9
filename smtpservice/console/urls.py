"""URLs of the SMTP service pages, named ``smtpservice:<page>``; every page is Reader-level and read-only,
but for lifting an AUTH throttle (Manager)."""
from django.urls import path

from smtpservice.console import throttle_views, views

app_name = "smtpservice"

urlpatterns = [
    path("messages/", views.ReceivedMessageListView.as_view(), name="message-list"),
    path("messages/<int:pk>/", views.ReceivedMessageDetailView.as_view(), name="message-detail"),
    path("messages/<int:pk>/eml/", views.MessageDownloadView.as_view(), name="message-download"),
    path("mailboxes/", views.MailboxListView.as_view(), name="mailbox-list"),
    path("mailboxes/<int:pk>/", views.MailboxView.as_view(), name="mailbox"),
    path("mailboxes/messages/<int:pk>/", views.MailboxMessageView.as_view(), name="mailbox-message"),
    path("sessions/", views.SessionLogListView.as_view(), name="session-list"),
    path("sessions/<int:pk>/", views.SessionLogDetailView.as_view(), name="session-detail"),
    path("sessions/throttles/", throttle_views.ThrottleListView.as_view(), name="throttle-list"),
]
