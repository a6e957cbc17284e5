"""Which hosts may receive a Salesforce login or access token: Salesforce's own, or admitted ones.

The login choice (Production, Sandbox, My Domain) becomes an OAuth host here; a token endpoint that
answers with an instance outside Salesforce is refused with the same rules.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from backend.config import Settings

# Salesforce's own login and instance domains; anything else must be admitted by configuration.
SALESFORCE_DOMAINS = (
    ".salesforce.com",
    ".force.com",
    ".my.salesforce.com",
    ".salesforce-setup.com",
    ".cloudforce.com",
    ".database.com",
)


# A My Domain login host: one label (``acme``, ``acme--uat``, ``acme-dev-ed``), an optional kind of
# org, then my.salesforce.com. Nothing else under a Salesforce-owned domain: anyone can get a
# *.force.com Site, a *.my.site.com Experience Cloud site, and more (issue 18).
_MY_DOMAIN_KINDS = r"(?:\.(?:sandbox|develop|scratch|demo|patch|trailblaze))?"
_MY_DOMAIN = re.compile(rf"^[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?{_MY_DOMAIN_KINDS}\.my\.salesforce\.com$")
# The Lightning address people paste from their browser names the same My Domain.
_LIGHTNING = re.compile(rf"^([a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?{_MY_DOMAIN_KINDS})\.lightning\.force\.com$")


class LoginHostRefused(ValueError):
    """A login host that is not Salesforce's and not admitted by configuration."""


# One DNS label; a host is two or more of them (no userinfo, path, query, fragment or backslash can
# hide in it, which is what a suffix check alone would let through).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


def _host_admitted(netloc: str, patterns: tuple[str, ...]) -> bool:
    netloc = netloc.lower()
    for pattern in patterns:
        pattern = pattern.lower().strip()
        if pattern.startswith("*.") and ":" not in netloc and netloc.endswith(pattern[1:]):
            return True
        if netloc == pattern:
            return True
    return False


def is_salesforce_host(settings: Settings, netloc: str) -> bool:
    """True for a Salesforce login or instance host (by domain), or one the configuration admits."""
    netloc = netloc.lower()
    host, _, port = netloc.partition(":")
    if _host_admitted(netloc, settings.SALESFORCE_ALLOWED_HOSTS):
        return True
    if port or not _HOST.match(host):
        return False
    return any(host.endswith(domain) for domain in SALESFORCE_DOMAINS)


def is_my_domain_host(settings: Settings, netloc: str) -> bool:
    """True for a My Domain login host (``*.my.salesforce.com`` and its org kinds) or a configured one."""
    netloc = netloc.lower()
    configured = {urlsplit(u).netloc.lower() for u in (settings.SALESFORCE_LOGIN_URL, settings.SALESFORCE_SANDBOX_URL)}
    if netloc in configured or _host_admitted(netloc, settings.SALESFORCE_ALLOWED_HOSTS):
        return True
    return _MY_DOMAIN.match(netloc) is not None


def check_salesforce_url(settings: Settings, url: str) -> str:
    """``url`` if it is an https URL on a Salesforce host (or an admitted one); LoginHostRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.username or parts.password or not parts.netloc:
        raise LoginHostRefused(f"{parts.netloc or url} is not a Salesforce address.")
    if not is_salesforce_host(settings, parts.netloc):
        raise LoginHostRefused(f"{parts.netloc} is not a Salesforce domain.")
    return url


def login_url_for(settings: Settings, environment: str, domain: str = "") -> str:
    """The OAuth host for Production, Sandbox or a My Domain; raise LoginHostRefused otherwise."""
    if environment == "production":
        return settings.SALESFORCE_LOGIN_URL
    if environment == "sandbox":
        return settings.SALESFORCE_SANDBOX_URL
    if environment != "mydomain":
        raise LoginHostRefused("Choose Production, Sandbox or My Domain.")
    raw = (domain or "").strip()
    if not raw or len(raw) > 253:
        raise LoginHostRefused("Enter your My Domain, for example acme.my.salesforce.com.")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme != "https":
            raise LoginHostRefused("My Domain must use https.")
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise LoginHostRefused("Enter only the domain name, for example acme.my.salesforce.com.")
        raw = parts.netloc
    netloc = raw.lower()
    # Whatever could end the host part of a URL is refused outright, not parsed around.
    if any(c in netloc for c in "/?#\\@%") or any(c.isspace() for c in netloc):
        raise LoginHostRefused("Enter only the domain name, for example acme.my.salesforce.com.")
    host, _, port = netloc.partition(":")
    if "." not in host:
        host = f"{host}.my.salesforce.com"  # "acme" is how people say their My Domain
        netloc = f"{host}:{port}" if port else host
    lightning = _LIGHTNING.match(host)
    if lightning and not port:
        host = netloc = f"{lightning.group(1)}.my.salesforce.com"
    if not _HOST.match(host) or (port and not port.isdigit()):
        raise LoginHostRefused(f"{netloc} is not a domain name.")
    if is_my_domain_host(settings, netloc):
        return f"https://{netloc}"
    raise LoginHostRefused(f"{netloc} is not a Salesforce domain.")


def environment_of(settings: Settings, login_url: str) -> str:
    """Which login choice a login URL corresponds to."""
    if login_url == settings.SALESFORCE_LOGIN_URL:
        return "production"
    if login_url == settings.SALESFORCE_SANDBOX_URL:
        return "sandbox"
    return "mydomain"
