// Renders the browser effects of each cutout in Node, for tests/test_browser_effects.py.
// Usage: node render_effects.mjs <module.js> <module.wasm> <dir>: reads <dir>/<case>.png,
// writes <dir>/<case>-<effect>.rgba (raw RGBA) and prints {case: {effect: milliseconds}}.
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modulePath, wasmPath, dir] = process.argv.slice(2);
const { loadEffects, decodePng, CLIENT_EFFECTS } = await import(pathToFileURL(modulePath));
const effects = await loadEffects(await readFile(wasmPath));
const times = {};
for (const file of (await readdir(dir)).filter((f) => f.endsWith(".png")).sort()) {
  const name = file.slice(0, -4);
  const cutout = await decodePng(await readFile(join(dir, file)));
  times[name] = {};
  for (const effect of CLIENT_EFFECTS) {
    const start = performance.now();
    const out = effects[effect](cutout);
    times[name][effect] = performance.now() - start;
    await writeFile(join(dir, `${name}-${effect}.rgba`), out.data);
  }
}
console.log(JSON.stringify(times));
