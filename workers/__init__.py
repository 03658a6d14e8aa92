"""The Celery app and tasks, the in-process runner, publishing order, inbox scanning and the ``roomcast`` CLI."""
