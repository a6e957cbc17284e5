"""A Flask test client whose requests arrive over https, as the task pane's do (tests and bench)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

# The origin the test client's requests claim to come to; the app's PUBLIC_BASE_URL must match it.
PUBLIC_BASE_URL = "https://localhost:3000"


class HttpsClient(FlaskClient):
    """A test client whose requests arrive over https at PUBLIC_BASE_URL (Secure cookies work)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost:3000"})
