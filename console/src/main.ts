// Start-up: config.json → MSAL (finish a redirect sign-in if one is coming back) → the shell, or
// the sign-in page. Nothing here may leave a blank page: every failure is shown in words.

import "./styles.css";
import { App } from "./app";
import { Auth } from "./auth";
import { loadConfig, type ConsoleConfig } from "./config";
import { h, replace } from "./dom";
import { isRouteHash } from "./router";
import { SignInRequired } from "./api";
import { alertBox, errorMessage } from "./ui";

const root = document.getElementById("app") as HTMLElement;

// The skip link targets <main>; keep it from changing the hash (the router owns the hash).
document.addEventListener("click", (ev) => {
  const link = (ev.target as Element | null)?.closest?.("a.skip-link");
  if (!link) return;
  ev.preventDefault();
  document.getElementById("main")?.focus();
});

async function boot(): Promise<void> {
  let config: ConsoleConfig;
  try {
    config = await loadConfig();
  } catch (err) {
    return failed("The console could not load its configuration.", err);
  }
  let auth: Auth;
  let signInError: string | null;
  let returnTo: string | null;
  try {
    const created = await Auth.create(config);
    auth = created.auth;
    signInError = created.result.error;
    returnTo = created.result.returnTo;
  } catch (err) {
    return failed("The console could not start Microsoft sign-in.", err);
  }
  if (returnTo && isRouteHash(returnTo) && returnTo !== location.hash) {
    history.replaceState(history.state, "", `${location.pathname}${location.search}${returnTo}`);
  } else if (!isRouteHash(location.hash)) {
    history.replaceState(history.state, "", `${location.pathname}${location.search}#/buildings`);
  }
  if (!auth.account()) return signInPage(auth, signInError, null);
  try {
    await auth.token(); // reads the token's claims (roles, buildings) before the first page
  } catch (err) {
    if (err instanceof SignInRequired) return signInPage(auth, signInError, "Your session has ended. Sign in again to continue.");
    return failed("The console could not get a token for the BookingBridge API.", err, () => void boot());
  }
  new App(root, auth, config).start();
}

function signInPage(auth: Auth, error: string | null, note: string | null): void {
  document.title = "Sign in · BookingBridge";
  const signIn = h("button", { type: "button", class: "primary" }, "Sign in with Microsoft");
  signIn.addEventListener("click", () => {
    signIn.disabled = true;
    auth.signIn(location.hash).catch((err: unknown) => {
      signIn.disabled = false;
      replace(msg, alertBox(`Sign-in could not start: ${errorMessage(err)}`));
    });
  });
  const msg = h("div", null, error ? alertBox(`Sign-in failed: ${error}`) : null, note ? alertBox(note, "warning") : null);
  replace(
    root,
    h(
      "main",
      { id: "main", tabindex: "-1", class: "signin" },
      h("h1", null, "Sign in"),
      h("p", null, "The BookingBridge console is for building administrators. Sign in with your work account."),
      msg,
      signIn,
    ),
  );
}

function failed(what: string, err: unknown, retry: () => void = () => location.reload()): void {
  console.error(err);
  const again = h("button", { type: "button" }, "Retry");
  again.addEventListener("click", retry);
  replace(
    root,
    h(
      "main",
      { id: "main", tabindex: "-1" },
      h("h1", null, "BookingBridge console"),
      h("div", { class: "banner banner-error", role: "alert" }, h("p", null, what, " ", err instanceof Error ? err.message : ""), again),
    ),
  );
}

void boot();
