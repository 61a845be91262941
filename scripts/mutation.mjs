// npm run mutation -- AREA [stryker options]: builds once, then mutation-tests one area (see
// stryker.config.mjs). llama.cpp's logits are kept in .cache/oracle so mutants do not ask it again.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [area, ...rest] = process.argv.slice(2);
const areas = ["sampling", "model", "tokenizer", "experts", "server", "quant"];
if (!areas.includes(area)) {
  console.error(`usage: npm run mutation -- AREA [stryker options]\n  AREA: ${areas.join(", ")}`);
  process.exit(2);
}
const run = (command, args, env = {}) => {
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });
  if (result.status !== 0) process.exit(result.status ?? 1);
};
run("npm", ["run", "build"]);
run(process.execPath, [join(root, "node_modules/@stryker-mutator/core/bin/stryker.js"), "run", "stryker.config.mjs", ...rest], {
  MUTATION_AREA: area,
  SMALLTHINKER_ORACLE_CACHE: join(root, ".cache", "oracle"),
});
