// Compiles the project's Solidity contracts with solc-js into deterministic JSON artifacts.
// Usage: node shared/chain/compile.mjs [--check]
//   --check  compile and compare with the committed artifacts; exit 1 if they differ.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const solc = require(path.join(root, "node_modules", "solc"));

const contractsDir = path.join(here, "contracts");
const artifactsDir = path.join(here, "artifacts");
const check = process.argv.includes("--check");

function findImports(importPath) {
  // Relative imports inside an npm package arrive already resolved against the importing file.
  const candidate = path.join(root, "node_modules", importPath);
  if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  return { error: `not found: ${importPath}` };
}

// Contracts used as published by their authors, compiled from the pinned npm package.
const npmContracts = ["@chainlink/contracts/src/v0.8/tests/MockV3Aggregator.sol"];

const sources = {};
for (const file of fs.readdirSync(contractsDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(contractsDir, file), "utf8") };
}
for (const file of npmContracts) {
  sources[file] = { content: fs.readFileSync(path.join(root, "node_modules", file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    // No metadata hash: the bytecode then depends only on the source, not on file paths or time.
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}

let stale = 0;
fs.mkdirSync(artifactsDir, { recursive: true });
for (const [file, contracts] of Object.entries(output.contracts)) {
  for (const [name, compiled] of Object.entries(contracts)) {
    // Only the contract named like its file; imported interfaces are not artifacts.
    if (!sources[file] || path.basename(file, ".sol") !== name) continue;
    const artifact = {
      contractName: name,
      compiler: `solc-js ${solc.version()}`,
      abi: compiled.abi,
      bytecode: "0x" + compiled.evm.bytecode.object,
    };
    const text = JSON.stringify(artifact, null, 2) + "\n";
    const target = path.join(artifactsDir, `${name}.json`);
    if (check) {
      const current = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
      if (current !== text) {
        console.error(`stale artifact: ${path.relative(root, target)}`);
        stale += 1;
      }
    } else {
      fs.writeFileSync(target, text);
      console.log(`wrote ${path.relative(root, target)}`);
    }
  }
}
process.exit(stale ? 1 : 0);
