"""Outbound https: sessions with our trust store and timeouts, the SSRF guard, host rules."""
