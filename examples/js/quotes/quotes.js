// An object that calls a slow HTTP API and keeps serving its other clients
// meanwhile. As on Cloudflare, while one request awaits `fetch()`, the
// object takes its next request (the input gate is closed only during
// storage calls), so `GET /latest` answers at once even while a refresh
// waits two seconds on the upstream.
//
// The default router sends /QUOTES/<name>/<route> to the object <name>:
// - GET .../refresh: fetches a new quote from the upstream, stores it, and
//   answers it (about 2 s).
// - GET .../latest: the stored quote and how many refreshes are in flight,
//   at once.
import { DurableObject } from "dohost";

export class Quotes extends DurableObject {
  // Refreshes waiting on the upstream: in memory, shared by every request
  // the object is handling.
  inFlight = 0;

  async fetch(request) {
    const route = new URL(request.url).pathname.split("/").filter(Boolean)[0];
    if (route === "refresh") return this.refresh();
    if (route === "latest") {
      const latest = (await this.ctx.storage.get("latest")) ?? null;
      return Response.json({ latest, refreshing: this.inFlight });
    }
    return new Response("GET /QUOTES/<name>/refresh or /QUOTES/<name>/latest\n", { status: 404 });
  }

  async refresh() {
    this.inFlight++;
    try {
      const response = await fetch(`${this.env.UPSTREAM}/quote`);
      if (!response.ok) return new Response(`the upstream answered ${response.status}\n`, { status: 502 });
      const latest = { ...(await response.json()), fetchedAt: new Date().toISOString() };
      await this.ctx.storage.put("latest", latest);
      return Response.json(latest);
    } finally {
      this.inFlight--;
    }
  }
}
