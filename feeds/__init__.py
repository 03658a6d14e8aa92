"""Podcast feeds built from catalog records: RSS 2.0 with iTunes and Podcasting 2.0 tags (``feeds.rss``), the
``podcast:`` feedgen extension (``feeds.podcast_ext``), and show configuration and artwork (``feeds.shows``).
Imports ``storage`` records and the shared error tree, never the pipeline's media code."""
