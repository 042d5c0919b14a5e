"""How the bundled demo host serves the admin's static files with DEBUG off (WhiteNoise)."""

from __future__ import annotations

import warnings
from typing import Any

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, serving the apps' static folders (WHITENOISE_USE_FINDERS) and STATIC_ROOT.

    STATIC_ROOT exists only after ``collectstatic``; the finders serve the same files without
    it, so WhiteNoise's "No directory at: STATIC_ROOT" warning is left out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No directory at: ")
            super().__init__(*args, **kwargs)
