"""The HTML pages a person sees: sign-in, consent, admin approval. Usable in a real browser.

Element ids follow Entra's own pages (`i0116` username, `i0118` password, `idSIButton9` next,
`idBtn_Accept`/`idBtn_Back` on consent) so browser scripts written for Entra work here too.
"""

from __future__ import annotations

import html

_STYLE = """
body{font-family:"Segoe UI",Arial,sans-serif;background:#f2f2f2;margin:0}
main{background:#fff;max-width:440px;margin:6vh auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;font-weight:600;margin:.5em 0}
input[type=email],input[type=password],input[type=text]{width:100%;padding:6px 0;border:0;
border-bottom:1px solid #666;font-size:1rem;margin:8px 0 16px}
button{padding:6px 24px;font-size:1rem;border:0;margin-right:8px;cursor:pointer}
.primary{background:#0067b8;color:#fff}.secondary{background:#ccc}
.error{color:#e81123}.brand{color:#737373;font-weight:600}ul{padding-left:1.2em}
li{margin:.4em 0}small{color:#666}
"""


def _page(title: str, body: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body><main><div class="brand">Microsoft 365 emulator</div>{body}</main></body></html>"""


def sign_in(action: str, ctx: str, app_name: str, username: str = "", error: str = "") -> str:
    err = f'<p class="error" id="usernameError">{html.escape(error)}</p>' if error else ""
    return _page(
        "Sign in to your account",
        f"""<h1>Sign in</h1><p>to continue to <b>{html.escape(app_name)}</b></p>{err}
<form method="post" action="{html.escape(action)}" id="signin">
<input type="hidden" name="ctx" value="{html.escape(ctx)}">
<label for="i0116">Email, phone, or Skype</label>
<input type="email" id="i0116" name="loginfmt" value="{html.escape(username)}" required
 autocomplete="username">
<label for="i0118">Password</label>
<input type="password" id="i0118" name="passwd" required autocomplete="current-password">
<button type="submit" class="primary" id="idSIButton9">Sign in</button>
</form>""",
    )


def consent(
    action: str,
    ctx: str,
    app_name: str,
    publisher: str,
    username: str,
    permissions: list[tuple[str, str]],
    *,
    can_consent_for_org: bool,
    admin_consent: bool = False,
) -> str:
    items = "".join(
        f"<li><b>{html.escape(title)}</b><br><small>{html.escape(scope)}</small></li>"
        for scope, title in permissions
    )
    org = (
        '<p><label><input type="checkbox" name="consent_for_org" value="true" id="consentForOrg">'
        " Consent on behalf of your organization</label></p>"
        if can_consent_for_org and not admin_consent
        else ""
    )
    heading = "Permissions requested" + (" — review for your organization" if admin_consent else "")
    return _page(
        "Permissions requested",
        f"""<h1>{heading}</h1>
<p><b>{html.escape(app_name)}</b><br><small>{html.escape(publisher)}</small></p>
<p>Signed in as <span id="signedInUser">{html.escape(username)}</span></p>
<p>This app would like to:</p><ul id="permissions">{items}</ul>{org}
<p><small>Accepting these permissions means that you allow this app to use your data as specified
in its terms of service and privacy statement.</small></p>
<form method="post" action="{html.escape(action)}" id="consent">
<input type="hidden" name="ctx" value="{html.escape(ctx)}">
<button type="submit" class="secondary" name="decision" value="cancel" id="idBtn_Back">Cancel</button>
<button type="submit" class="primary" name="decision" value="accept" id="idBtn_Accept">Accept</button>
</form>""",
    )


def admin_approval(action: str, ctx: str, app_name: str, message: str) -> str:
    """What a non-admin sees when the app needs permissions only an admin can grant (AADSTS90094)."""
    return _page(
        "Need admin approval",
        f"""<h1>Need admin approval</h1><p><b>{html.escape(app_name)}</b></p>
<p id="error-message">{html.escape(message)}</p>
<form method="post" action="{html.escape(action)}" id="consent">
<input type="hidden" name="ctx" value="{html.escape(ctx)}">
<button type="submit" class="secondary" name="decision" value="cancel" id="idBtn_Back">
Return to the application without granting consent</button>
</form>""",
    )


def form_post(redirect_uri: str, params: dict[str, str]) -> str:
    """response_mode=form_post: a self-submitting form to the redirect URI."""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
    )
    return f"""<!doctype html><html><head><title>Working...</title></head>
<body onload="document.forms[0].submit()"><form method="post" action="{html.escape(redirect_uri)}">
{fields}<noscript><button type="submit">Continue</button></noscript></form></body></html>"""


def signed_out() -> str:
    """After a sign-out with no registered `post_logout_redirect_uri` to return to."""
    return _page(
        "You signed out of your account",
        """<h1 id="signedOut">You signed out of your account</h1>
<p>It's a good idea to close all browser windows.</p>""",
    )
