"""The latent explorer in the browser: a FastAPI app (``create_app``) and its static page. No model code here:
the app calls the model contract and ``aekit.explore``. FastAPI is imported when ``create_app`` is called."""

from .app import create_app

__all__ = ["create_app"]
