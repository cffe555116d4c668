// Bundles main.js (+ style.css) into ../static with esbuild, copies index.html and writes
// THIRD_PARTY_LICENSES.txt for every npm package that ended up in the bundle.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// The page renders with WebGL only: "three/webgpu" (imported by three-render-objects for an
// option we never set) is replaced by a stub, which keeps ~1 MB of unused code out of app.js.
const stubWebGPU = {
  name: "stub-three-webgpu",
  setup(build) {
    build.onResolve({ filter: /^three\/webgpu$/ }, () => ({ path: join(here, "stubs", "three-webgpu.js") }));
  },
};

const result = await esbuild.build({
  entryPoints: { app: join(here, "main.js") },
  outdir: out,
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020", "chrome90", "firefox90", "safari15"],
  legalComments: "none", // full licence texts go to THIRD_PARTY_LICENSES.txt below
  metafile: true,
  logLevel: "info",
  define: { "process.env.NODE_ENV": '"production"' },
  plugins: [stubWebGPU],
});
copyFileSync(join(here, "index.html"), join(out, "index.html"));

// Which packages were bundled, with version, licence and licence text.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const parts = input.split(/[\\/]/);
  const i = parts.lastIndexOf("node_modules");
  if (i < 0) continue;
  const name = parts[i + 1].startsWith("@") ? `${parts[i + 1]}/${parts[i + 2]}` : parts[i + 1];
  const root = join(here, ...parts.slice(0, i + 1), ...name.split("/"));
  if (!pkgs.has(name)) pkgs.set(name, root);
}
const sections = [];
for (const [name, root] of [...pkgs].sort(([a], [b]) => a.localeCompare(b))) {
  const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const file = readdirSync(root).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  const text = file ? readFileSync(join(root, file), "utf8").trim() : `(no licence file shipped; package.json says ${meta.license})`;
  sections.push(`${name}@${meta.version} (${meta.license})\n${"-".repeat(60)}\n${text}\n`);
}
writeFileSync(
  join(out, "THIRD_PARTY_LICENSES.txt"),
  `Third-party packages bundled into app.js / app.css\n${"=".repeat(60)}\n\n${sections.join("\n")}`,
);
const sizes = readdirSync(out).map((f) => `${f} ${readFileSync(join(out, f)).length} B`);
console.log(`bundled ${pkgs.size} packages: ${[...pkgs.keys()].join(", ")}\n${sizes.join("\n")}`);
