// The app's API client: JSON calls and server-sent event streams over fetch (POST bodies work,
// which EventSource cannot do). Errors arrive as {"error": {"message", "type", "code"}}.

const KEY_STORE = "aigc.apiKey";

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code || null;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(value) {
  if (value) localStorage.setItem(KEY_STORE, value);
  else localStorage.removeItem(KEY_STORE);
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  // A session that ended (logged out elsewhere, expired): back to the login page.
  if (response.status === 401 && !response.url.includes("/api/auth/")) {
    window.dispatchEvent(new CustomEvent("authrequired"));
  }
  return new ApiError(response.status, body?.error);
}

export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { message: String(e), code: "network" });
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// POST `body` to `path` and call onEvent(event) for each `data: {json}` event until the stream
// ends. `signal` aborts it. Resolves when the stream is over; rejects on HTTP errors.
export async function stream(path, body, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") return;
    throw new ApiError(0, { message: String(e), code: "network" });
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of frame.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const payload = line.slice(5).trim();
          if (payload && payload !== "[DONE]") onEvent(JSON.parse(payload));
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") throw e;
  }
}

// GET a file the server makes (an export), with the same credentials as api(): its content as a
// Blob, the name its Content-Disposition gives (else `fallback`) and the response's headers.
export async function fetchFile(path, fallback) {
  let response;
  try {
    response = await fetch(path, { headers: headers(false) });
  } catch (e) {
    throw new ApiError(0, { message: String(e), code: "network" });
  }
  if (!response.ok) throw await failure(response);
  const named = /filename="?([^";]+)"?/.exec(response.headers.get("content-disposition") || "");
  return { blob: await response.blob(), filename: named ? named[1] : fallback, headers: response.headers };
}

// Save `content` (a text or a Blob) as a file called `filename`.
export function download(filename, content, type) {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Ask the user for a JSON file; resolves with its parsed content (or null if cancelled).
export function pickJsonFile() {
  return new Promise((resolve, reject) => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "application/json,.json";
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return resolve(null);
      try {
        resolve(JSON.parse(await file.text()));
      } catch (e) {
        reject(new ApiError(422, { message: `${file.name}: ${e.message}`, code: "invalid_json" }));
      }
    });
    input.click();
  });
}
