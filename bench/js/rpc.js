// The RPC and outbound benchmark's worker, run unchanged by workerd
// (bench/workerd/run-module.sh) and by dohost (bench/js/rpc.toml), and the
// same as the Rust guests in bench/guests:
// GET /pingpong/<name>?peer=<p>&n=<n>  the Peer <name> calls ping() on the Peer <p> n times, one after another
// GET /fanout/<prefix>?n=<n>           calls ping() on Peers <prefix>0 .. <prefix><n-1>, one after another
// GET /fanout-parallel/<prefix>?n=<n>  the same with Promise.all
// GET /upstream/<name>                 the Peer <name> fetches the local HTTP service on 127.0.0.1:8790 and answers its body and a count
import { DurableObject } from "cloudflare:workers";

const UPSTREAM = "http://127.0.0.1:8790/";

export class Peer extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.pings = 0;
  }

  ping() {
    return ++this.pings;
  }

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/upstream/")) {
      const body = await (await fetch(UPSTREAM)).text();
      return new Response(`${body} ${++this.pings}`);
    }
    const n = Number(url.searchParams.get("n") || 100);
    const peer = this.env.PEER.get(this.env.PEER.idFromName(url.searchParams.get("peer") || "b"));
    let last = 0;
    for (let i = 0; i < n; i++) last = await peer.ping();
    return new Response(String(last));
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, route, name] = url.pathname.split("/");
    const n = Number(url.searchParams.get("n") || 100);
    const peer = (i) => env.PEER.get(env.PEER.idFromName(name + i));
    if (route === "fanout") {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += await peer(i).ping();
      return new Response(String(sum));
    }
    if (route === "fanout-parallel") {
      const all = await Promise.all(Array.from({ length: n }, (_, i) => peer(i).ping()));
      return new Response(String(all.reduce((a, b) => a + b, 0)));
    }
    if (route === "pingpong" || route === "upstream") return env.PEER.get(env.PEER.idFromName(name || "a")).fetch(request);
    return new Response("not found", { status: 404 });
  },
};
