// The slow HTTP API the Quotes example calls: GET /quote answers a JSON
// quote after 2 seconds (QUOTE_DELAY_MS), as a payment or AI API might.
// Listens on 127.0.0.1:8788, or on PORT.
import { createServer } from "node:http";

const quotes = [
  "Simple things should be simple, complex things should be possible.",
  "Make it work, make it right, make it fast.",
  "Premature optimization is the root of all evil.",
];
const delay = Number(process.env.QUOTE_DELAY_MS ?? 2000);
let served = 0;

const server = createServer((request, response) => {
  if (request.method !== "GET" || request.url !== "/quote") {
    response.writeHead(404).end("GET /quote\n");
    return;
  }
  setTimeout(() => {
    const quote = quotes[served++ % quotes.length];
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ quote, number: served }));
  }, delay);
});

server.listen(Number(process.env.PORT ?? 8788), "127.0.0.1", () => {
  console.log(`upstream: GET http://127.0.0.1:${server.address().port}/quote answers after ${delay} ms`);
});
