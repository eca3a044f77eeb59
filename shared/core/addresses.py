"""Email addresses and domain names as BookingBridge compares them. Pure functions.

- Domains: lower-case, one trailing dot dropped, internationalised names in their ASCII (IDNA)
  form, at least two labels of letters, digits and inner hyphens, a non-numeric top-level label.
  Equal domains compare equal as strings after `normalise_domain`; a subdomain is a different domain.
- Addresses: `local@domain`, the local part of RFC 5322 `atext` and inner dots (plus non-ASCII
  letters, RFC 6531), no quoted local parts; the whole address lower-cased (Exchange treats
  addresses case-insensitively) and at most 254 characters. Plus-addressing is kept as given:
  `ann+x@contoso.com` is its own address; `without_subaddress` gives `ann@contoso.com` for lookups
  that want to fall back to it.
"""

from __future__ import annotations

import re

EMAIL_MAX = 254
LOCAL_MAX = 64
DOMAIN_MAX = 253

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]")


def normalise_domain(text: str) -> str | None:
    """The canonical form of a domain name, or None if it is not one."""
    domain = text.strip().lower().removesuffix(".")
    if not domain or not domain.isprintable():
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = domain.split(".")
    if len(domain) > DOMAIN_MAX or len(labels) < 2 or labels[-1].isdigit():
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


def _valid_local(local: str) -> bool:
    if not 1 <= len(local) <= LOCAL_MAX:
        return False
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(
        c == "." or _ATEXT.fullmatch(c) or (not c.isascii() and c.isprintable() and not c.isspace())
        for c in local
    )


def normalise_email(text: str) -> str | None:
    """The canonical form of an email address, or None if it is not one."""
    local, at, domain = text.strip().rpartition("@")
    # No whitespace around the "@" ("ann @x.com"): normalise_domain alone would strip it.
    if not at or not _valid_local(local) or domain != domain.strip():
        return None
    canonical_domain = normalise_domain(domain)
    if canonical_domain is None:
        return None
    address = f"{local.lower()}@{canonical_domain}"
    return address if len(address) <= EMAIL_MAX else None


def domain_of(address: str) -> str:
    """The domain of a normalised address."""
    return address.rpartition("@")[2]


def without_subaddress(address: str) -> str:
    """`ann+tag@contoso.com` → `ann@contoso.com` (a normalised address; others unchanged)."""
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" if base and base != local else address
