// The shell: header (account, sign-out), alerts, building switcher and nav, and the page of the
// current route. Pages get a PageContext; their errors end as words on the page or as a banner.

import { ApiClient, ApiError, NetworkError, SignInRequired, seg } from "./api";
import type { Auth } from "./auth";
import type { ConsoleConfig } from "./config";
import { h, replace } from "./dom";
import { BUILDING_PAGES, PAGE_TITLES, buildingHref, isRouteHash, parseRoute, routeTitle, type Route } from "./router";
import { buildingZone } from "./time";
import type { Building, Resource } from "./types";
import { alertBox, errorMessage, pageHeading } from "./ui";
import { renderAnalytics } from "./pages/analytics";
import { renderAudit } from "./pages/audit";
import { renderBookings } from "./pages/bookings";
import { renderBuildings } from "./pages/buildings";
import { renderChecks } from "./pages/checks";
import { renderHealth } from "./pages/health";
import { renderM365 } from "./pages/m365";
import { renderPeople } from "./pages/people";
import { renderResources } from "./pages/resources";
import { renderSettings } from "./pages/settings";

export interface PageContext {
  app: App;
  api: ApiClient;
  config: ConsoleConfig;
  building: string;
  query: Record<string, string>;
  zone: string;
  resources: Resource[];
  signal: AbortSignal;
  /** Say something to screen readers (and show it in the status line). */
  announce(message: string): void;
  /** Register what stops when the page is left (timers). */
  onCleanup(fn: () => void): void;
  /**
   * An error of an action: a network failure or an ended session becomes a banner (with Retry
   * running `retry`); anything else is returned as words to show next to what caused it.
   */
  handle(err: unknown, retry?: () => void | Promise<void>): string | null;
}

type PageRender = (ctx: PageContext, main: HTMLElement) => Promise<void>;

const PAGES: Partial<Record<string, PageRender>> = {
  m365: renderM365,
  resources: renderResources,
  people: renderPeople,
  settings: renderSettings,
  bookings: renderBookings,
  analytics: renderAnalytics,
  health: renderHealth,
  checks: renderChecks,
  audit: renderAudit,
};

export class App {
  readonly api: ApiClient;
  private readonly root: HTMLElement;
  private readonly alerts = h("div", { class: "alerts", role: "region", "aria-label": "Alerts" });
  private readonly status = h("div", { class: "status-line", role: "status", "aria-live": "polite" });
  private readonly main = h("main", { id: "main", tabindex: "-1" });
  private readonly nav = h("nav", { class: "nav", "aria-label": "Building pages" });
  private controller = new AbortController();
  private cleanups: (() => void)[] = [];
  private resourceCache = new Map<string, { at: number; resources: Resource[] }>();
  private buildingCache = new Map<string, { at: number; building: Building }>();
  private lastRoute = "";

  constructor(
    root: HTMLElement,
    readonly auth: Auth,
    readonly config: ConsoleConfig,
  ) {
    this.root = root;
    this.api = new ApiClient({ base: config.apiBase, token: (o) => auth.token(o) });
  }

  start(): void {
    const signOut = h("button", { type: "button", class: "secondary" }, "Sign out");
    signOut.addEventListener("click", () => {
      void this.auth.signOut();
    });
    const header = h(
      "header",
      { class: "top" },
      h("a", { class: "brand", href: "#/buildings" }, "BookingBridge"),
      h(
        "div",
        { class: "account" },
        h("span", { class: "who" }, "Signed in as ", h("strong", { "data-account": "" }, this.auth.accountName())),
        signOut,
      ),
    );
    replace(this.root, header, this.alerts, h("div", { class: "layout" }, this.nav, this.main), this.status);
    window.addEventListener("hashchange", () => {
      if (isRouteHash(location.hash)) void this.render();
    });
    window.addEventListener("unhandledrejection", (ev) => {
      ev.preventDefault();
      this.showError(ev.reason);
    });
    window.addEventListener("error", (ev) => {
      this.showError(ev.error);
    });
    void this.render();
  }

  navigate(hash: string): void {
    if (location.hash === hash) void this.render();
    else location.hash = hash;
  }

  /** The building itself (its name and time zone), cached briefly. */
  async building(building: string, signal?: AbortSignal): Promise<Building> {
    const hit = this.buildingCache.get(building);
    if (hit && Date.now() - hit.at < 30_000) return hit.building;
    const found = await this.api.get<Building>(`/buildings/${seg(building)}`, signal ? { signal } : {});
    this.buildingCache.set(building, { at: Date.now(), building: found });
    return found;
  }

  /** Resources of a building (for their names, and the zone if the building states none), cached briefly. */
  async resources(building: string, signal?: AbortSignal, fresh = false): Promise<Resource[]> {
    const hit = this.resourceCache.get(building);
    if (!fresh && hit && Date.now() - hit.at < 30_000) return hit.resources;
    const resources = await this.api.all<Resource>(`/buildings/${seg(building)}/resources`, signal ? { signal } : {});
    this.resourceCache.set(building, { at: Date.now(), resources });
    return resources;
  }

  forgetResources(building: string): void {
    this.resourceCache.delete(building);
  }

  private statusTimer = 0;

  announce(message: string): void {
    this.status.textContent = "";
    window.clearTimeout(this.statusTimer);
    window.setTimeout(() => {
      this.status.textContent = message;
      this.statusTimer = window.setTimeout(() => {
        this.status.textContent = "";
      }, 8000);
    }, 50);
  }

  /** A network failure: a banner with Retry. */
  showNetworkBanner(message: string, retry: () => void | Promise<void>): void {
    this.clearBanner("network");
    const retryButton = h("button", { type: "button" }, "Retry");
    retryButton.addEventListener("click", () => {
      this.clearBanner("network");
      void retry();
    });
    this.alerts.append(h("div", { class: "banner banner-error", role: "alert", "data-banner": "network" }, h("p", null, message), retryButton));
  }

  /** The session ended: ask to sign in again, coming back to this page. */
  showSessionBanner(): void {
    if (this.alerts.querySelector('[data-banner="session"]')) return;
    const signIn = h("button", { type: "button" }, "Sign in again");
    signIn.addEventListener("click", () => {
      void this.auth.signIn(location.hash);
    });
    this.alerts.append(
      h(
        "div",
        { class: "banner banner-warning", role: "alert", "data-banner": "session" },
        h("p", null, "Your session has ended. Sign in again to continue; you will come back to this page."),
        signIn,
      ),
    );
  }

  private clearBanner(name: string): void {
    this.alerts.querySelectorAll(`[data-banner="${name}"]`).forEach((el) => el.remove());
  }

  private showError(err: unknown): void {
    if (err instanceof NetworkError) this.showNetworkBanner(err.message, () => this.render());
    else if (err instanceof SignInRequired) this.showSessionBanner();
    else {
      console.error(err);
      this.clearBanner("error");
      this.alerts.append(
        h("div", { class: "banner banner-error", role: "alert", "data-banner": "error" }, h("p", null, errorMessage(err))),
      );
    }
  }

  handle(err: unknown, retry?: () => void | Promise<void>): string | null {
    if (err instanceof DOMException && err.name === "AbortError") return null;
    if (err instanceof NetworkError) {
      this.showNetworkBanner(err.message, retry ?? (() => this.render()));
      return err.message;
    }
    if (err instanceof SignInRequired) {
      this.showSessionBanner();
      return "Sign in again to continue.";
    }
    if (!(err instanceof ApiError)) console.error(err);
    return errorMessage(err);
  }

  async render(): Promise<void> {
    this.controller.abort();
    for (const fn of this.cleanups.splice(0)) fn();
    const controller = new AbortController();
    this.controller = controller;
    const route = parseRoute(location.hash);
    const routeKey = route.name === "building" ? `${route.building}/${route.page}` : route.name;
    const moved = routeKey !== this.lastRoute;
    this.lastRoute = routeKey;
    this.clearBanner("network");
    this.clearBanner("error");
    this.renderNav(route);
    document.title = `${routeTitle(route)}${route.name === "building" ? ` · ${route.building}` : ""} · BookingBridge`;
    this.main.setAttribute("aria-busy", "true");
    replace(this.main, h("p", { class: "loading" }, "Loading…"));
    try {
      await this.renderPage(route, controller.signal);
    } catch (err) {
      if (controller.signal.aborted) return;
      this.renderFailure(route, err);
    } finally {
      if (!controller.signal.aborted) {
        this.main.removeAttribute("aria-busy");
        if (moved) this.main.querySelector<HTMLElement>("h1")?.focus();
      }
    }
  }

  private async renderPage(route: Route, signal: AbortSignal): Promise<void> {
    if (route.name === "buildings") {
      await renderBuildings(this, this.main, signal);
      return;
    }
    if (route.name === "notfound") {
      replace(
        this.main,
        pageHeading("Page not found"),
        h("p", null, "There is no such page. ", h("a", { href: "#/buildings" }, "Go to your buildings.")),
      );
      return;
    }
    if (!this.auth.buildings().includes(route.building)) {
      replace(
        this.main,
        pageHeading("No access"),
        h("p", null, `Your account may not manage building ${route.building}.`),
        h("p", null, h("a", { href: "#/buildings" }, "See the buildings you manage.")),
      );
      return;
    }
    let info: Building | null = null;
    try {
      info = await this.building(route.building, signal);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(
          this.main,
          pageHeading("Building not found"),
          h("p", null, `Building ${route.building} is not set up in BookingBridge yet. Ask the operator to create it.`),
          h("p", null, h("a", { href: "#/buildings" }, "See the buildings you manage.")),
        );
        return;
      }
      if (!(err instanceof ApiError) || err.status === 401 || err.status === 403) throw err;
    }
    if (signal.aborted) return;
    let resources: Resource[] = [];
    try {
      resources = await this.resources(route.building, signal);
    } catch (err) {
      // Only for the building's time zone here: a page that needs them says what failed.
      if (!(err instanceof ApiError) || err.status === 401 || err.status === 403) throw err;
    }
    if (signal.aborted) return;
    const ctx: PageContext = {
      app: this,
      api: this.api,
      config: this.config,
      building: route.building,
      query: route.query,
      zone: buildingZone(info, resources),
      resources,
      signal,
      announce: (m) => this.announce(m),
      onCleanup: (fn) => this.cleanups.push(fn),
      handle: (err, retry) => this.handle(err, retry),
    };
    const page = PAGES[route.page];
    if (!page) {
      replace(this.main, pageHeading(PAGE_TITLES[route.page], ctx.zone), h("p", null, "This page is coming soon."));
      return;
    }
    const container = h("div", { class: "page", "data-page": route.page });
    await page(ctx, container);
    if (!signal.aborted) replace(this.main, container);
  }

  private renderFailure(route: Route, err: unknown): void {
    const title = routeTitle(route);
    if (err instanceof ApiError && err.status === 403) {
      replace(this.main, pageHeading("No access"), alertBox(errorMessage(err)));
      return;
    }
    const message = this.handle(err, () => this.render());
    replace(this.main, pageHeading(title), alertBox(message ?? "The page could not be loaded."));
  }

  private renderNav(route: Route): void {
    const buildings = this.auth.buildings();
    const current = route.name === "building" ? route.building : null;
    const children: Node[] = [];
    if (buildings.length) {
      const select = h(
        "select",
        { id: "building-switcher" },
        current ? null : h("option", { value: "" }, "Choose a building"),
        ...buildings.map((b) => h("option", { value: b, selected: b === current }, b)),
      );
      select.addEventListener("change", () => {
        if (!select.value) return;
        const page = route.name === "building" ? route.page : "m365";
        this.navigate(buildingHref(select.value, page));
      });
      children.push(h("div", { class: "switcher" }, h("label", { for: "building-switcher" }, "Building"), select));
    }
    const links = h(
      "ul",
      null,
      h("li", null, h("a", { href: "#/buildings", "aria-current": route.name === "buildings" ? "page" : null }, "Buildings")),
      ...(current
        ? BUILDING_PAGES.map((p) =>
            h(
              "li",
              null,
              h(
                "a",
                { href: buildingHref(current, p), "aria-current": route.name === "building" && route.page === p ? "page" : null },
                PAGE_TITLES[p],
              ),
            ),
          )
        : []),
    );
    children.push(links);
    replace(this.nav, ...children);
  }
}
