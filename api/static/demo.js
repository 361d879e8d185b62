// The demo page: upload a photo to /api/v2/jobs, poll the job, show its previews while it
// runs, then its four outputs.
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

  const $ = (id) => document.getElementById(id);
  let currentRun = 0; // a newer upload makes the older run stop polling and drawing

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

  // XMLHttpRequest rather than fetch: only it reports upload progress.
  function upload(form, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", JOBS);
      xhr.setRequestHeader("Accept", "application/json");
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
    const response = await fetch(`${JOBS}/${encodeURIComponent(id)}`, {
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    const body = parseJson(await response.text());
    if (!response.ok) throw apiError(response.status, body);
    return body;
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
      showStep(job.status);
      if (job.status === "processing" && job.preview) showPreview(job);
      if (job.status === "succeeded") return job;
      if (job.status === "failed" || job.status === "canceled") {
        const error = job.error || {};
        throw new ShownError(error.message || `The job was ${job.status}.`, error.code || job.status);
      }
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

  function effectCard(name, output, stem) {
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

  function showResults(job, fileName, uploadMs) {
    delete $("effects").dataset.previewOf;
    const stem = stemOf(fileName);
    const cards = Object.keys(EFFECTS)
      .filter((name) => job.outputs[name])
      .map((name) => effectCard(name, job.outputs[name], stem));
    $("effects").replaceChildren(...cards);

    const rows = [timingRow("Upload (measured in this browser)", formatMs(uploadMs))];
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

  async function start(file) {
    const run = ++currentRun;
    reset(file);
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("format", $("format").value);
    form.append("max_size", $("max-size").value);
    form.append("preview", "true");
    const background = $("background").value;
    if (background === "colour") form.append("background", $("background-colour").value);
    else if (background !== "transparent") form.append("background", background);
    if ($("crop").checked) {
      form.append("crop", "subject");
      form.append("crop_margin", "5%");
    }
    try {
      const started = performance.now();
      const { status, body } = await upload(form, (fraction) => {
        if (run === currentRun) $("upload-progress").value = Math.round(fraction * 100);
      });
      const uploadMs = performance.now() - started;
      if (run !== currentRun) return;
      if (status !== 202 && status !== 200) throw apiError(status, body);
      $("upload-progress").value = 100;
      $("upload-progress").hidden = true;
      showStep(body.status);
      const job = body.status === "succeeded" ? body : await poll(body.id, run);
      if (job && run === currentRun) showResults(job, file.name, uploadMs);
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

  $("photo").addEventListener("change", onPicked);
  $("camera").addEventListener("change", onPicked);
  $("upload-form").addEventListener("submit", (event) => event.preventDefault());
  $("background").addEventListener("change", () => {
    $("colour-option").hidden = $("background").value !== "colour";
  });
  setUpDropZone();
})();
