"""Object stores (a local folder, S3 through boto3) and the SQLAlchemy catalog of shows and episodes.
Imports nothing of roomcast but the shared error tree in ``pipeline.errors``."""
