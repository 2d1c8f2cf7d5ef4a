"""Django settings for a loopback BottleCRM on SQLite, without PostgreSQL, Redis or S3.

Used by realsys.py (``DJANGO_SETTINGS_MODULE=ponte_bottlecrm_settings`` with this folder on
``PYTHONPATH``) inside BottleCRM's own virtualenv. The database path comes from
``PONTE_BOTTLECRM_DB``; uploads go beside it. Migrations are switched off and the schema is
built from the models (``migrate --run-syncdb``): seconds instead of minutes on SQLite, and the
migrations only add PostgreSQL row-level security and data backfills.
"""

from __future__ import annotations

import os
from pathlib import Path

from crm.settings import *  # type: ignore[import-not-found]
from crm.settings import INSTALLED_APPS  # type: ignore[import-not-found]

_DB = Path(os.environ["PONTE_BOTTLECRM_DB"])

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_DB),
        "OPTIONS": {"timeout": 20},
    }
}
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = True
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
MEDIA_ROOT = str(_DB.parent / "media")
STATIC_ROOT = str(_DB.parent / "static")  # not site-packages (whitenoise warns when it is absent)
os.makedirs(STATIC_ROOT, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
MIGRATION_MODULES = {app.rsplit(".", 1)[-1]: None for app in INSTALLED_APPS}
