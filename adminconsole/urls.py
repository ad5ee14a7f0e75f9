"""URLs of the console. Every page needs a login (LoginRequiredMiddleware) except the login page and
the language switcher; roles are checked by each view (directory.permissions)."""
from django.contrib.auth import views as auth_views
from django.urls import include, path

from adminconsole import accounts, transfer, views

urlpatterns = [
    path("accounts/login/", accounts.ConsoleLoginView.as_view(), name="login"),
    path("accounts/two-factor/", accounts.TwoFactorView.as_view(), name="two-factor"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/setlang/", views.set_language, name="set_language"),
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("audit/", views.AuditListView.as_view(), name="audit-list"),
    path("users/", views.UserListView.as_view(), name="user-list"),
    path("users/new/", views.UserCreateView.as_view(), name="user-create"),
    path("users/<int:pk>/role/", views.UserRoleView.as_view(), name="user-role"),
    path("users/<int:pk>/", accounts.UserManageView.as_view(), name="user-manage"),
    path("directory/import/", transfer.DirectoryImportView.as_view(), name="directory-import"),
    path("directory/export/", transfer.DirectoryExportView.as_view(), name="directory-export"),
    path("queue/", include("smtpservice.console.queue_urls")),
    path("", include("adminconsole.documents.urls")),
    path("", include("smtpservice.console.urls")),
    path("", include("smtpservice.console.explain_urls")),
]
