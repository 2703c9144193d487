"""The studio: one browser page to ask for a set, watch it being made and hear the stems.

``site`` holds what both faces share (the page's files, its security headers, its
configuration, which files a manifest lets the page read); ``orchestrators/studio_api.py``
serves it from the Functions app over blob storage, ``generation.studio.local`` over a
folder written by ``python -m generation generate``.
"""
