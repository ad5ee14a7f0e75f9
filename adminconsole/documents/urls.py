"""URLs of the directory documents: the same pages for every document type, named
``directory:<model_name>-list|detail|create|update|delete|history|compare|restore``."""
from django.urls import URLPattern, path

from adminconsole.documents import history_views, views
from directory.presenters import DOCUMENT_TYPES, DocumentType

app_name = "directory"


def document_urls(document_type: DocumentType) -> list[URLPattern]:
    detail_view = views.DETAIL_VIEWS.get(document_type.model, views.DocumentDetailView)
    pages = (
        ("", views.DocumentListView, "list"),
        ("new/", views.DocumentEditView, "create"),
        ("<int:pk>/", detail_view, "detail"),
        ("<int:pk>/edit/", views.DocumentEditView, "update"),
        ("<int:pk>/delete/", views.DocumentDeleteView, "delete"),
        ("<int:pk>/history/", history_views.HistoryView, "history"),
        ("<int:pk>/history/compare/", history_views.CompareView, "compare"),
        ("<int:pk>/history/<int:number>/restore/", history_views.RestoreView, "restore"),
    )
    return [
        path(f"{document_type.url_prefix}/{route}", view.as_view(document_type=document_type), name=f"{document_type.name}-{action}")
        for route, view, action in pages
    ]


urlpatterns = [
    url for document_type in DOCUMENT_TYPES for url in document_urls(document_type)
] + [
    path("servers/<int:pk>/generate-certificate/", views.GenerateCertificateView.as_view(), name="server-generate-certificate"),
    path("deleted/", history_views.DeletedListView.as_view(), name="deleted-list"),
]
