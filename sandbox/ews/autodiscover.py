"""POX Autodiscover for the fake EWS: the EWS URL for a known address, an error, or a configured redirect."""

from __future__ import annotations

from lxml.etree import XMLSyntaxError

from sandbox.ews.soap import EWS_PATH, NS_AD, NS_AD_OUT, NS_AD_REQ, Response, el, parse_xml, to_bytes
from sandbox.ews.state import EwsUser, FakeEwsState


def autodiscover(state: FakeEwsState, user: EwsUser, raw: bytes, host: str) -> Response:
    """Answer one Autodiscover request of the signed-in ``user`` (sent to ``host``)."""
    with state.lock:
        state.operations.append("Autodiscover")
        if state.autodiscover_http_redirect:
            return "302 Found", [("Location", state.autodiscover_http_redirect)], b""
        redirect_url = state.autodiscover_redirect_url.get(host.lower())
    try:
        root = parse_xml(raw)
        email = (root.findtext(f"{{{NS_AD_REQ}}}Request/{{{NS_AD_REQ}}}EMailAddress") or "").strip().lower()
    except XMLSyntaxError:
        email = ""
    with state.lock:
        state.autodiscover_emails.append(email)
        redirect = state.autodiscover_redirect_addr.get(email)
        known = email in state.users or any(email in u.aliases for u in state.users.values())
    doc = el(f"{{{NS_AD}}}Autodiscover", None)
    resp = el(f"{{{NS_AD_OUT}}}Response", doc)
    if redirect_url:
        account = el(f"{{{NS_AD_OUT}}}Account", resp)
        el(f"{{{NS_AD_OUT}}}Action", account, "redirectUrl")
        el(f"{{{NS_AD_OUT}}}RedirectUrl", account, redirect_url)
    elif redirect:
        account = el(f"{{{NS_AD_OUT}}}Account", resp)
        el(f"{{{NS_AD_OUT}}}Action", account, "redirectAddr")
        el(f"{{{NS_AD_OUT}}}RedirectAddr", account, redirect)
    elif not known:
        err = el(f"{{{NS_AD_OUT}}}Error", resp, Time="12:00:00.000", Id="1")
        el(f"{{{NS_AD_OUT}}}ErrorCode", err, "500")
        el(f"{{{NS_AD_OUT}}}Message", err, "The email address can't be found.")
    else:
        usr = el(f"{{{NS_AD_OUT}}}User", resp)
        el(f"{{{NS_AD_OUT}}}DisplayName", usr, user.display_name)
        el(f"{{{NS_AD_OUT}}}AutoDiscoverSMTPAddress", usr, email)
        account = el(f"{{{NS_AD_OUT}}}Account", resp)
        el(f"{{{NS_AD_OUT}}}AccountType", account, "email")
        el(f"{{{NS_AD_OUT}}}Action", account, "settings")
        for kind in ("EXCH", "EXPR"):
            proto = el(f"{{{NS_AD_OUT}}}Protocol", account)
            el(f"{{{NS_AD_OUT}}}Type", proto, kind)
            el(f"{{{NS_AD_OUT}}}EwsUrl", proto, state.ews_url or f"{state.base_url}{EWS_PATH}")
    return "200 OK", [("Content-Type", "text/xml; charset=utf-8")], to_bytes(doc)
