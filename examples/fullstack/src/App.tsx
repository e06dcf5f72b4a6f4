import { useEffect, useState } from "react";

export default function App() {
  const [count, setCount] = useState<number | null>(null);

  useEffect(() => {
    fetch("/api/counter")
      .then((res) => res.json() as Promise<{ value: number }>)
      .then((data) => setCount(data.value));
  }, []);

  async function increment() {
    const res = await fetch("/api/counter", { method: "POST" });
    const data = (await res.json()) as { value: number };
    setCount(data.value);
  }

  return (
    <main>
      <h1>Counter</h1>
      <p>
        The count is <span id="count">{count ?? "…"}</span>
      </p>
      <button id="increment" onClick={increment}>
        Increment
      </button>
    </main>
  );
}
