// Admin sign-in with MSAL Browser: authorization code + PKCE as a single-page app, by redirect
// (sturdier than popups, headless too). The page the admin was on is kept in sessionStorage
// across the round trip, so an expired session signs in again without losing the page.

import {
  BrowserAuthError,
  InteractionRequiredAuthError,
  PublicClientApplication,
  type AccountInfo,
} from "@azure/msal-browser";
import { NetworkError, SignInRequired } from "./api";
import type { ConsoleConfig } from "./config";
import { buildingsOf, decodePayload, rolesOf, type Claims } from "./jwt";

const RETURN_KEY = "bookingbridge.console.returnTo";

export interface SignInResult {
  /** An error from the identity platform on the way back (shown on the sign-in page). */
  error: string | null;
  /** The route to go back to after a sign-in round trip, if one was saved. */
  returnTo: string | null;
}

export class Auth {
  private claims: Claims | null = null;

  private constructor(
    private readonly pca: PublicClientApplication,
    private readonly config: ConsoleConfig,
  ) {}

  static async create(config: ConsoleConfig): Promise<{ auth: Auth; result: SignInResult }> {
    const pca = new PublicClientApplication({
      auth: {
        clientId: config.clientId,
        authority: config.authority,
        knownAuthorities: config.knownAuthorities,
        redirectUri: config.redirectUri,
        postLogoutRedirectUri: config.redirectUri,
        navigateToLoginRequestUrl: false, // the route is restored from sessionStorage instead
      },
      cache: { cacheLocation: "sessionStorage" },
    });
    await pca.initialize();
    const auth = new Auth(pca, config);
    let error: string | null = null;
    try {
      const response = await pca.handleRedirectPromise();
      if (response?.account) pca.setActiveAccount(response.account);
      if (response?.accessToken) auth.claims = decodePayload(response.accessToken);
    } catch (err) {
      error = describeAuthError(err);
    }
    if (!pca.getActiveAccount()) {
      const [first] = pca.getAllAccounts();
      if (first) pca.setActiveAccount(first);
    }
    const returnTo = sessionStorage.getItem(RETURN_KEY);
    sessionStorage.removeItem(RETURN_KEY);
    return { auth, result: { error, returnTo } };
  }

  account(): AccountInfo | null {
    return this.pca.getActiveAccount();
  }

  accountName(): string {
    const a = this.account();
    return a?.name || a?.username || "signed in";
  }

  /** The API's access token for the console's scope (cached by MSAL, refreshed when due). */
  async token({ forceRefresh }: { forceRefresh: boolean } = { forceRefresh: false }): Promise<string> {
    const account = this.account();
    if (!account) throw new SignInRequired("You are not signed in");
    try {
      const result = await this.pca.acquireTokenSilent({ scopes: this.config.scopes, account, forceRefresh });
      this.claims = decodePayload(result.accessToken);
      return result.accessToken;
    } catch (err) {
      if (err instanceof BrowserAuthError && /network|post_request_failed|no_network/i.test(err.errorCode)) {
        throw new NetworkError("Microsoft Entra ID could not be reached. Check your connection and retry.");
      }
      if (err instanceof InteractionRequiredAuthError || err instanceof BrowserAuthError) {
        throw new SignInRequired("Your session has ended");
      }
      throw new SignInRequired(`Signing in again is needed (${describeAuthError(err)})`);
    }
  }

  /** Buildings this admin may manage: the access token's `buildings` claim. */
  buildings(): string[] {
    return buildingsOf(this.claims);
  }

  roles(): string[] {
    return rolesOf(this.claims);
  }

  /** Sign in (again) by redirect, coming back to `returnTo` (default: the current route). */
  async signIn(returnTo: string = location.hash): Promise<void> {
    sessionStorage.setItem(RETURN_KEY, returnTo || "#/buildings");
    const account = this.account();
    await this.pca.loginRedirect({
      scopes: this.config.scopes,
      ...(account ? { loginHint: account.username } : {}),
    });
  }

  async signOut(): Promise<void> {
    const account = this.account();
    await this.pca.logoutRedirect({ ...(account ? { account } : {}), postLogoutRedirectUri: this.config.redirectUri });
  }
}

export function describeAuthError(err: unknown): string {
  if (err && typeof err === "object" && "errorMessage" in err) {
    const e = err as { errorCode?: string; errorMessage?: string };
    const first = (e.errorMessage ?? "").split(/\r?\n/)[0] ?? "";
    return [e.errorCode, first].filter(Boolean).join(": ");
  }
  return err instanceof Error ? err.message : String(err);
}
