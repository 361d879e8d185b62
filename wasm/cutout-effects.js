// cutout-effects: three of cutout's effects rendered where this module runs (a browser, a
// WebView, Node), from the colour cutout the server stores, to the server's pixels.
// An ES module with no dependencies and nothing to build; the API is in
// docs/browser-effects.md. In short:
//
//   import { loadEffects, decodePng, encodePng } from "<served URL of cutout-effects.js>";
//   const effects = await loadEffects();              // fetches the .wasm beside this file
//   const cutout = await decodePng(await (await fetch(job.outputs.color)).arrayBuffer());
//   const ink = effects.dithering(cutout);            // { width, height, data } RGBA
//   context.putImageData(new ImageData(ink.data, ink.width, ink.height), 0, 0);
//
// Images are ImageData-shaped: { width, height, data } with straight (not premultiplied)
// RGBA bytes. Read the cutout with decodePng, not through a canvas: a canvas premultiplies
// the alpha and colour-manages, which changes the soft edge's pixels.

// build.sh writes the content-hashed name of the module here.
const WASM_FILE = "cutout-effects.wasm";

/** The effects this module renders, in the server's names. */
export const CLIENT_EFFECTS = Object.freeze(["enhancedblackwhite", "popart", "dithering"]);

/**
 * Loads the WebAssembly module. `source` is optional: a URL (string or URL), the module's
 * bytes (ArrayBuffer or typed array) or a compiled WebAssembly.Module; by default the .wasm
 * served beside this file. Resolves to an object with one function per effect, each taking
 * the cutout and returning the effect: `enhancedblackwhite`, `popart`, `dithering`, and
 * `render(name, cutout)`.
 */
export async function loadEffects(source = new URL(WASM_FILE, import.meta.url)) {
  const instance = await instantiate(source);
  const wasm = instance.exports;
  if (wasm._initialize) wasm._initialize();
  const render = (name, cutout) => {
    const fn = wasm[`cutout_${name}`];
    if (!CLIENT_EFFECTS.includes(name) || !fn) {
      throw new Error(`unknown effect ${name}; this module renders ${CLIENT_EFFECTS.join(", ")}`);
    }
    const { width, height, data } = cutout;
    const bytes = width * height * 4;
    if (!(width > 0 && height > 0) || !data || data.length !== bytes) {
      throw new Error("the cutout must be { width, height, data } with width × height × 4 bytes");
    }
    const input = wasm.cutout_alloc(bytes);
    const output = wasm.cutout_alloc(bytes);
    try {
      if (!input || !output) throw new Error("out of WebAssembly memory");
      new Uint8Array(wasm.memory.buffer, input, bytes).set(data);
      const failed = fn(input, width, height, output);
      if (failed) throw new Error(`${name} cannot render a ${width}×${height} image here`);
      // A copy: the module's memory is reused (and may move) on the next call.
      const out = new Uint8ClampedArray(bytes);
      out.set(new Uint8Array(wasm.memory.buffer, output, bytes));
      return { width, height, data: out };
    } finally {
      wasm.cutout_free(input);
      wasm.cutout_free(output);
    }
  };
  const effects = { render };
  for (const name of CLIENT_EFFECTS) effects[name] = (cutout) => render(name, cutout);
  return Object.freeze(effects);
}

async function instantiate(source) {
  const imports = {
    env: { emscripten_notify_memory_growth() {} },
    wasi_snapshot_preview1: {
      proc_exit(code) {
        throw new Error(`cutout-effects exited (${code})`);
      },
    },
  };
  if (source instanceof WebAssembly.Module) return WebAssembly.instantiate(source, imports);
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    return (await WebAssembly.instantiate(source, imports)).instance;
  }
  const response = await fetch(source);
  if (!response.ok) throw new Error(`cannot fetch ${source}: HTTP ${response.status}`);
  if (WebAssembly.instantiateStreaming && response.headers.get("content-type") === "application/wasm") {
    return (await WebAssembly.instantiateStreaming(response, imports)).instance;
  }
  return (await WebAssembly.instantiate(await response.arrayBuffer(), imports)).instance;
}

// ---- PNG, exactly: straight 8-bit RGBA, no colour management ----

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }; // by colour type

async function zlib(bytes, Stream) {
  const stream = new Blob([bytes]).stream().pipeThrough(new Stream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Decodes an 8-bit, non-interlaced PNG (as the server writes them: RGBA, RGB, grey,
 * grey + alpha or palette) into { width, height, data } straight RGBA, byte for byte.
 */
export async function decodePng(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer.buffer ?? buffer);
  if (!SIGNATURE.every((b, i) => bytes[i] === b)) throw new Error("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, type = 0, palette = null, transparency = null;
  const idat = [];
  for (let at = 8; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const name = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (name === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      type = body[9];
      if (body[8] !== 8 || body[12] !== 0 || !(type in CHANNELS)) {
        throw new Error("only 8-bit, non-interlaced PNGs are read here");
      }
    } else if (name === "PLTE") palette = body;
    else if (name === "tRNS") transparency = body;
    else if (name === "IDAT") idat.push(body);
    else if (name === "IEND") break;
    at += 12 + length;
  }
  const raw = await zlib(new Blob(idat), DecompressionStream);
  const channels = CHANNELS[type];
  const stride = width * channels;
  if (raw.length < (stride + 1) * height) throw new Error("truncated PNG");
  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const up = y ? pixels.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = up[i];
      const c = i >= channels ? up[i - channels] : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`bad PNG filter ${filter}`);
      row[i] = (line[i] + predictor) & 255;
    }
  }
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, o = 0; i < pixels.length; i += channels, o += 4) {
    if (type === 6) data.set(pixels.subarray(i, i + 4), o);
    else if (type === 2) data.set([pixels[i], pixels[i + 1], pixels[i + 2], 255], o);
    else if (type === 0) data.set([pixels[i], pixels[i], pixels[i], 255], o);
    else if (type === 4) data.set([pixels[i], pixels[i], pixels[i], pixels[i + 1]], o);
    else {
      const k = pixels[i];
      const alpha = transparency && k < transparency.length ? transparency[k] : 255;
      data.set([palette[3 * k], palette[3 * k + 1], palette[3 * k + 2], alpha], o);
    }
  }
  return { width, height, data };
}

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function chunk(name, body) {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = name.charCodeAt(i);
  out.set(body, 8);
  let crc = 0xffffffff;
  for (let i = 4; i < 8 + body.length; i++) crc = CRC_TABLE[(crc ^ out[i]) & 255] ^ (crc >>> 8);
  view.setUint32(8 + body.length, (crc ^ 0xffffffff) >>> 0);
  return out;
}

/** Encodes { width, height, data } (straight RGBA) as an RGBA PNG, losslessly. */
export async function encodePng({ width, height, data }) {
  const stride = width * 4;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 2; // "up": rows of a cutout look alike
    for (let i = 0; i < stride; i++) {
      const above = y ? data[(y - 1) * stride + i] : 0;
      raw[y * (stride + 1) + 1 + i] = (data[y * stride + i] - above) & 255;
    }
  }
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header.set([8, 6, 0, 0, 0], 8);
  const parts = [
    new Uint8Array(SIGNATURE),
    chunk("IHDR", header),
    chunk("IDAT", await zlib(raw, CompressionStream)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (png.set(p, at), at + p.length), 0);
  return png;
}
