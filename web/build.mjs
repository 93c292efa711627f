// Builds the app into dist/, which is committed and embedded in the server binary
// (server/src/web.rs), so that running the server needs only a Rust toolchain. CI runs this
// again and fails if dist/ differs from what is committed: the output depends only on the
// sources and the locked packages (no timestamps, no absolute paths).
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const dist = new URL("./dist/", import.meta.url);
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);

const common = {
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "safari16", "firefox115"],
  legalComments: "none",
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["src/app.js"], outfile: "dist/app.js" });

const copied = ["index.html", "app.css", "manifest.webmanifest", "icon.svg"];
for (const name of copied) copyFileSync(new URL(`./src/${name}`, import.meta.url), new URL(name, dist));
// esbuild cannot bundle automerge's wasm; the app loads it from beside the bundle.
copyFileSync(
  new URL("./node_modules/@automerge/automerge/dist/automerge.wasm", import.meta.url),
  new URL("automerge.wasm", dist),
);

// The service worker's cache is named after everything it caches: a new build replaces the
// old cache as a whole, and an unchanged one keeps it.
const shell = ["index.html", "app.js", "app.css", "automerge.wasm", "manifest.webmanifest", "icon.svg"];
const version = createHash("sha256");
for (const name of shell) version.update(readFileSync(new URL(name, dist)));
await build({
  ...common,
  entryPoints: ["src/sw.js"],
  outfile: "dist/sw.js",
  define: {
    BUILD_VERSION: JSON.stringify(version.digest("hex").slice(0, 16)),
    SHELL: JSON.stringify(shell.map(name => (name === "index.html" ? "/" : `/${name}`))),
  },
});

const sizes = Object.fromEntries(
  [...shell, "sw.js"].map(name => [name, readFileSync(new URL(name, dist)).length]),
);
writeFileSync(new URL("sizes.json", dist), `${JSON.stringify(sizes, null, 2)}\n`);
console.log(sizes);
