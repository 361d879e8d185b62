// The demo page: send a photo's SHA-256 to /api/v2/jobs (the photo itself only when the server
// asks for it), follow the job's event stream (polling where the stream fails), show its
// previews while it runs, then its four outputs. Asks for an API key when the server answers
// 401 and keeps it in this tab's sessionStorage only.
// Plain browser JavaScript, no build step and no dependencies.
"use strict";

(() => {
  const JOBS = "api/v2/jobs"; // relative, so the page also works behind a path prefix
  const POLL_MS = 500;
  const MAX_POLL_FAILURES = 5;
  const EFFECTS = {
    color: "Colour cutout",
    enhancedblackwhite: "Enhanced black & white",
    popart: "Pop art",
    dithering: "Dithering",
  };
  const TIMINGS = [
    ["queue_ms", "Waiting in the queue"],
    ["decode_ms", "Decoding"],
    ["inference_ms", "Segmentation"],
    ["effects_ms", "Effects"],
    ["encode_ms", "Encoding"],
    ["store_ms", "Storing"],
    ["total_ms", "Total, from upload to done"],
  ];
  const STATUS_TEXT = {
    queued: "Queued: waiting for a worker…",
    processing: "Processing: removing the background and rendering the effects…",
  };

  const KEY_STORE = "cutout-api-key";

  const $ = (id) => document.getElementById(id);
  let currentRun = 0; // a newer upload makes the older run stop polling and drawing
  let streamAbort = null; // stops the older run's event stream

  // The browser effects (docs/browser-effects.md): the module the server built, when this
  // browser runs WebAssembly. With them on, the job asks the server for the colour cutout
  // (PNG) only, and this page renders the other three from it, to the server's pixels.
  const MANIFEST = "static/wasm/manifest.json";
  let browserEffects = null; // { lib, effects } once loaded
  let blobUrls = []; // the last run's renders, released when the next run starts

  async function loadBrowserEffects() {
    const toggle = $("browser-effects");
    const note = $("browser-effects-note");
    try {
      if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
      const response = await fetch(MANIFEST);
      if (!response.ok) throw new Error("the server has no browser effects module");
      const { module } = await response.json();
      const lib = await import(new URL(`static/wasm/${module}`, document.baseURI).href);
      browserEffects = { lib, effects: await lib.loadEffects() };
      toggle.disabled = false;
      note.textContent = "On: the server sends the colour cutout (PNG) and this browser renders " +
        "the other three effects, pixel for pixel as the server would. Off: the server renders all four.";
    } catch (error) {
      toggle.checked = false;
      note.textContent = `Off: ${error.message}; the server renders every effect.`;
    }
    syncFormat();
  }

  // Only from the plain cutout: a background or a crop is the server's to apply after the
  // effects, so with either the server renders all four.
  const renderingHere = () =>
    browserEffects !== null && $("browser-effects").checked &&
    $("background").value === "transparent" && !$("crop").checked;

  // The browser renders from the lossless cutout: the format is PNG while it does.
  function syncFormat() {
    const format = $("format");
    if (renderingHere()) {
      format.dataset.chosen = format.dataset.chosen || format.value;
      format.value = "png";
      format.disabled = true;
    } else {
      if (format.dataset.chosen) format.value = format.dataset.chosen;
      delete format.dataset.chosen;
      format.disabled = false;
    }
  }

  class ShownError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  // The API's own {"error": {"code", "message"}}; anything else is described as best we can.
  function apiError(status, body) {
    const error = body && body.error;
    if (error && error.message) return new ShownError(error.message, error.code || `http_${status}`);
    return new ShownError(`The server answered with HTTP ${status}.`, `http_${status}`);
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch {
      return "";
    }
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // The key dialog; resolves true once a key is stored for this tab.
  function askForKey(refused) {
    const dialog = $("key-dialog");
    $("key-reason").textContent = refused
      ? "It refused that key. Check it and try again."
      : "It answered that this page needs an API key.";
    $("key-input").value = "";
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => {
          const key = $("key-input").value.trim();
          if (dialog.returnValue !== "ok" || !key) return resolve(false);
          sessionStorage.setItem(KEY_STORE, key);
          resolve(true);
        },
        { once: true },
      );
    });
  }

  // send(headers) again with a key while the server answers 401 and the user gives one.
  async function withKey(send) {
    for (;;) {
      const answer = await send(authHeaders());
      if (answer.status !== 401) return answer;
      const refused = apiKey() !== "";
      sessionStorage.removeItem(KEY_STORE);
      if (!(await askForKey(refused))) return answer;
    }
  }

  async function fetchJson(url, options) {
    const response = await fetch(url, { cache: "no-store", ...options });
    return { status: response.status, body: parseJson(await response.text()) };
  }

  // Hex SHA-256 of the file; null where SubtleCrypto is missing (plain http off localhost).
  async function sha256Hex(file) {
    if (!(window.crypto && crypto.subtle)) return null;
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  // XMLHttpRequest rather than fetch: only it reports upload progress.
  function upload(form, onProgress, headers) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", JOBS);
      xhr.setRequestHeader("Accept", "application/json");
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () =>
        resolve({ status: xhr.status, body: parseJson(xhr.responseText) }),
      );
      xhr.addEventListener("error", () =>
        reject(new ShownError("The upload failed: the server could not be reached.", "network_error")),
      );
      xhr.send(form);
    });
  }

  async function getJob(id) {
    const { status, body } = await withKey((headers) =>
      fetchJson(`${JOBS}/${encodeURIComponent(id)}`, {
        headers: { ...headers, Accept: "application/json" },
      }),
    );
    if (status !== 200) throw apiError(status, body);
    return body;
  }

  // What a job's state means for the page: the finished job, an error, or null (not yet).
  function onJob(job) {
    showStep(job.status);
    if (job.status === "processing" && job.preview) showPreview(job);
    if (job.status === "succeeded") return job;
    if (job.status === "failed" || job.status === "canceled") {
      const error = job.error || {};
      throw new ShownError(error.message || `The job was ${job.status}.`, error.code || job.status);
    }
    return null;
  }

  // Follow the job's Server-Sent Events (fetch, not EventSource: it can send the key).
  // Returns the finished job, or null when a newer run took over; any other trouble
  // (no stream, a dropped connection) throws a plain Error, and the caller polls instead.
  async function follow(id, run) {
    const controller = new AbortController();
    streamAbort = controller;
    const response = await withKey((headers) =>
      fetch(`${JOBS}/${encodeURIComponent(id)}/events`, {
        headers: { ...headers, Accept: "text/event-stream" },
        cache: "no-store",
        signal: controller.signal,
      }),
    );
    if (response.status === 401 || response.status === 404) {
      throw apiError(response.status, parseJson(await response.text()));
    }
    if (!response.ok || !response.body) throw new Error(`no event stream (${response.status})`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (run !== currentRun) return null;
        if (done) throw new Error("the event stream ended early");
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).trim())
            .join("\n");
          if (!data) continue; // a heartbeat comment, or the retry hint
          const job = onJob(JSON.parse(data));
          if (job) return job;
        }
      }
    } finally {
      controller.abort();
    }
  }

  async function waitForJob(id, run) {
    try {
      return await follow(id, run);
    } catch (error) {
      if (error instanceof ShownError || run !== currentRun) throw error;
      return poll(id, run); // the stream failed: poll instead
    }
  }

  // Poll until the job ends; a few network blips are retried with a growing pause.
  async function poll(id, run) {
    let failures = 0;
    while (run === currentRun) {
      let job;
      try {
        job = await getJob(id);
      } catch (error) {
        if (error instanceof ShownError || ++failures > MAX_POLL_FAILURES) {
          throw error instanceof ShownError
            ? error
            : new ShownError("Lost contact with the server while waiting for the job.", "network_error");
        }
        await sleep(POLL_MS * 2 ** failures);
        continue;
      }
      failures = 0;
      if (run !== currentRun) return null;
      if (onJob(job)) return job;
      await sleep(POLL_MS);
    }
    return null;
  }

  function showStep(step) {
    const order = ["upload", "queued", "processing", "succeeded"];
    const at = order.indexOf(step);
    for (const item of document.querySelectorAll(".steps li")) {
      const index = order.indexOf(item.dataset.step);
      item.classList.toggle("done", index < at || step === "succeeded");
      if (index === at && step !== "succeeded") item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
    if (STATUS_TEXT[step]) $("status-text").textContent = STATUS_TEXT[step];
  }

  function showError(error) {
    const shown = error instanceof ShownError ? error : new ShownError(String(error), "client_error");
    $("error-message").textContent = shown.message;
    $("error-code").textContent = shown.code;
    $("error").hidden = false;
    $("status-text").textContent = "Failed.";
  }

  function reset(file) {
    blobUrls.forEach((url) => URL.revokeObjectURL(url));
    blobUrls = [];
    delete $("effects").dataset.previewOf;
    $("error").hidden = true;
    $("results").hidden = true;
    $("effects").replaceChildren();
    $("timings").tBodies[0].replaceChildren();
    $("status").hidden = false;
    $("file-name").textContent = `${file.name} (${formatBytes(file.size)})`;
    $("upload-progress").value = 0;
    $("upload-progress").hidden = false;
    $("status-text").textContent = "Uploading…";
    showStep("upload");
  }

  function formatBytes(bytes) {
    if (bytes < 1024 * 1024) return `${Math.max(1, Math.round(bytes / 1024))} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  function formatMs(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  function extensionOf(contentType) {
    return (contentType || "").split("/")[1] || "bin";
  }

  function stemOf(name) {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(0, dot) : name || "photo";
  }

  function effectCard(name, output, stem, renderedMs) {
    const label = EFFECTS[name] || name;
    const item = document.createElement("li");
    item.className = "effect";
    item.dataset.effect = name;
    const figure = document.createElement("figure");
    const frame = document.createElement("div");
    frame.className = "checkerboard";
    const img = document.createElement("img");
    img.alt = `${label}: the photo with its background removed`;
    img.width = output.width;
    img.height = output.height;
    img.decoding = "async";
    img.addEventListener("error", () => {
      img.classList.add("broken");
      img.alt = `${label}: the image could not be loaded`;
    });
    img.src = output.url;
    frame.append(img);

    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "effect-name";
    title.textContent = label;
    const size = document.createElement("span");
    size.className = "effect-size";
    size.textContent = `${output.width}×${output.height} ${extensionOf(output.content_type).toUpperCase()}`;
    title.append(size);
    if (typeof renderedMs === "number") {
      const here = document.createElement("span");
      here.className = "effect-size rendered-here";
      here.textContent = `rendered in this browser in ${formatMs(renderedMs)}`;
      title.append(here);
    }
    const link = document.createElement("a");
    link.className = "button small";
    link.href = output.url;
    link.download = `${stem}.${name}.${extensionOf(output.content_type)}`;
    link.textContent = "Download";
    link.setAttribute("aria-label", `Download ${label}`);
    caption.append(title, link);
    figure.append(frame, caption);
    item.append(figure);
    return item;
  }

  function timingRow(label, value, className) {
    const row = document.createElement("tr");
    if (className) row.className = className;
    const name = document.createElement("td");
    name.textContent = label;
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(name, cell);
    return row;
  }

  // The worker's small previews (asked for with the upload), while the full outputs encode.
  function showPreview(job) {
    if ($("effects").dataset.previewOf === job.id) return;
    const cards = Object.keys(EFFECTS)
      .filter((name) => job.preview[name])
      .map((name) => {
        const card = effectCard(name, job.preview[name], "preview");
        card.classList.add("preview");
        card.querySelector("a").remove(); // nothing to download yet
        return card;
      });
    $("effects").replaceChildren(...cards);
    $("effects").dataset.previewOf = job.id;
    $("results").hidden = false;
    $("status-text").textContent = "Preview: finishing the full-size outputs…";
  }

  // The three client effects from the job's colour cutout, each timed, as PNG blobs.
  async function renderHere(job) {
    const { lib, effects } = browserEffects;
    const response = await fetch(job.outputs.color.url);
    if (!response.ok) throw new ShownError("Could not read the colour cutout.", `http_${response.status}`);
    const cutout = await lib.decodePng(new Uint8Array(await response.arrayBuffer()));
    const made = {};
    for (const name of lib.CLIENT_EFFECTS) {
      const started = performance.now();
      const image = effects[name](cutout);
      const ms = performance.now() - started;
      const png = await lib.encodePng(image);
      const url = URL.createObjectURL(new Blob([png], { type: "image/png" }));
      blobUrls.push(url);
      made[name] = { output: { url, width: image.width, height: image.height, content_type: "image/png" }, ms };
    }
    return made;
  }

  function showResults(job, fileName, uploadMs, madeHere) {
    delete $("effects").dataset.previewOf;
    const stem = stemOf(fileName);
    const cards = Object.keys(EFFECTS)
      .filter((name) => job.outputs[name] || madeHere[name])
      .map((name) => job.outputs[name]
        ? effectCard(name, job.outputs[name], stem)
        : effectCard(name, madeHere[name].output, stem, madeHere[name].ms));
    $("effects").replaceChildren(...cards);

    const rows = [timingRow("Upload (measured in this browser)", formatMs(uploadMs))];
    for (const [name, { ms }] of Object.entries(madeHere)) {
      rows.push(timingRow(`${EFFECTS[name]} (rendered in this browser)`, formatMs(ms)));
    }
    for (const [key, label] of TIMINGS) {
      const value = job.timings[key];
      if (typeof value !== "number") continue;
      const shown = key === "inference_ms" && job.batch_size > 1
        ? `${label} (batch of ${job.batch_size})`
        : label;
      rows.push(timingRow(shown, formatMs(value), key === "total_ms" ? "total" : ""));
    }
    $("timings").tBodies[0].replaceChildren(...rows);
    $("results").hidden = false;
    const total = job.timings.total_ms;
    $("status-text").textContent =
      typeof total === "number" ? `Done in ${formatMs(total)}.` : "Done.";
  }

  // Hash first: the finished job at once when the server already has it for this key (200),
  // null when it asks for the photo (428) or the browser cannot hash.
  async function submitByHash(file, options) {
    const sha = await sha256Hex(file).catch(() => null);
    if (!sha) return null;
    const answer = await withKey((headers) =>
      fetchJson(JOBS, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ image_sha256: sha, ...options }),
      }),
    );
    return answer.status === 428 ? null : answer;
  }

  async function start(file) {
    const run = ++currentRun;
    if (streamAbort) streamAbort.abort();
    reset(file);
    const here = renderingHere();
    const options = { format: $("format").value, max_size: $("max-size").value, preview: "true" };
    if (here) options.client_effects = browserEffects.lib.CLIENT_EFFECTS.join(",");
    const background = $("background").value;
    if (background === "colour") options.background = $("background-colour").value;
    else if (background !== "transparent") options.background = background;
    if ($("crop").checked) {
      options.crop = "subject";
      options.crop_margin = "5%";
    }
    const form = new FormData();
    form.append("image", file, file.name);
    for (const [name, value] of Object.entries(options)) form.append(name, String(value));
    try {
      const started = performance.now();
      let answer = await submitByHash(file, options);
      if (answer === null && run === currentRun) {
        answer = await withKey((headers) =>
          upload(
            form,
            (fraction) => {
              if (run === currentRun) $("upload-progress").value = Math.round(fraction * 100);
            },
            headers,
          ),
        );
      }
      const { status, body } = answer;
      const uploadMs = performance.now() - started;
      if (run !== currentRun) return;
      if (status !== 202 && status !== 200) throw apiError(status, body);
      $("upload-progress").value = 100;
      $("upload-progress").hidden = true;
      showStep(body.status);
      const job = body.status === "succeeded" ? body : await waitForJob(body.id, run);
      if (!job || run !== currentRun) return;
      if (here) $("status-text").textContent = "Rendering three effects in this browser…";
      const madeHere = here ? await renderHere(job) : {};
      if (run === currentRun) showResults(job, file.name, uploadMs, madeHere);
    } catch (error) {
      if (run === currentRun) showError(error);
    }
  }

  function onPicked(event) {
    const input = event.target;
    const file = input.files && input.files[0];
    if (file) start(file);
    input.value = ""; // choosing the same file again starts again
  }

  function setUpDropZone() {
    const zone = $("drop-zone");
    // A photo dropped anywhere on the page is taken, rather than opened by the browser.
    for (const type of ["dragover", "drop"]) {
      document.addEventListener(type, (event) => event.preventDefault());
    }
    zone.addEventListener("dragenter", () => zone.classList.add("dragging"));
    zone.addEventListener("dragover", () => zone.classList.add("dragging"));
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
    document.addEventListener("drop", (event) => {
      zone.classList.remove("dragging");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) start(file);
    });
  }

  for (const id of ["browser-effects", "background", "crop"]) $(id).addEventListener("change", syncFormat);
  loadBrowserEffects();
  $("photo").addEventListener("change", onPicked);
  $("camera").addEventListener("change", onPicked);
  $("upload-form").addEventListener("submit", (event) => event.preventDefault());
  $("background").addEventListener("change", () => {
    $("colour-option").hidden = $("background").value !== "colour";
  });
  setUpDropZone();
})();
