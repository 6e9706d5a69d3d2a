// The chain side of the chain-auth tests, done with the Ethereum ecosystem's own tools: solc-js
// compiles Rooms.sol and Ticket.sol, ethers deploys them to a local node (ganache, started by
// host/tests/support/chain.rs) and sends and calls whatever a test needs, so the plugin's
// eth_call encoding and decoding is checked against independent implementations.
//
//   node evm.mjs deploy --rpc <url>
//       prints {"rooms": "0x...", "ticket": "0x..."}
//   node evm.mjs send --rpc <url> --to <addr> --sig 'setOwner(string,address)'
//                     --args '["lobby","0x..."]' [--from <account index, default 0>]
//       sends a transaction from an unlocked node account, waits until it is mined, prints
//       {"tx": "0x...", "block": n, "status": 1}; a reverting call exits 1 with the reason
//   node evm.mjs call --rpc <url> --to <addr> --sig 'ownerOf(string) returns (address)'
//                     --args '["lobby"]'
//       prints the decoded result as JSON: a single output alone, several as an array;
//       integers as decimal strings (uint256 does not fit a JSON number)
//
// --sig is a human-readable ABI fragment without the `function` keyword; `view` is implied
// for `call`. Compiled output is cached under node_modules/.cache (solc-js takes seconds to
// load), keyed by the sources, the compiler version and the settings.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ContractFactory, Interface, JsonRpcProvider } from "ethers";

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCES = ["Rooms.sol", "Ticket.sol"];
// ganache 7.9's newest hardfork is shanghai; newer solc defaults emit opcodes it lacks (MCOPY).
const SETTINGS = {
  evmVersion: "shanghai",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};
// ganache mines each transaction as it arrives; poll fast rather than ethers' default 4 s.
const POLL_MS = 50;

function fail(why) {
  process.stderr.write(`evm.mjs: ${why}\n`);
  process.exit(1);
}

function options() {
  const { values, positionals } = parseArgs({
    options: {
      rpc: { type: "string" },
      to: { type: "string" },
      sig: { type: "string" },
      args: { type: "string", default: "[]" },
      from: { type: "string", default: "0" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) fail("usage: evm.mjs deploy|send|call --rpc <url> ...");
  if (!values.rpc) fail("--rpc is required");
  return { command: positionals[0], ...values };
}

/// `{ Rooms: { abi, bytecode }, Ticket: { abi, bytecode } }`, from the cache or from solc.
async function compile() {
  const sources = Object.fromEntries(
    SOURCES.map((file) => [file, { content: readFileSync(join(HERE, file), "utf8") }]),
  );
  const { default: solc } = await import("solc");
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const key = createHash("sha256")
    .update(solc.version())
    .update(JSON.stringify(input))
    .digest("hex");
  const cacheDir = join(HERE, "node_modules", ".cache", "switchboard-chain");
  const cached = join(cacheDir, `${key}.json`);
  try {
    return JSON.parse(readFileSync(cached, "utf8"));
  } catch {
    // Not compiled yet (or a torn file from an older run): compile below.
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) fail(`solc: ${errors.map((e) => e.formattedMessage).join("\n")}`);
  const contracts = {};
  for (const file of SOURCES) {
    for (const [name, c] of Object.entries(output.contracts[file])) {
      contracts[name] = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
    }
  }
  // Written whole then renamed, so a test running alongside never reads half a file.
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${cached}.${process.pid}.tmp`;
  writeFileSync(partial, JSON.stringify(contracts));
  renameSync(partial, cached);
  return contracts;
}

/// Plain JSON for an ethers result: bigints as decimal strings, Results as arrays.
function plain(value) {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return Array.from(value, plain);
  return value;
}

/// The one function described by `--sig`.
function fragment(sig, view) {
  if (!sig) fail("--sig is required");
  const text = `function ${sig.replace(/^function\s+/, "")}`;
  const withView = view && !/\b(view|pure)\b/.test(text) ? text.replace(/\)/, ") view") : text;
  const iface = new Interface([withView]);
  return { iface, fn: iface.fragments[0] };
}

function parsedArgs(json) {
  const args = JSON.parse(json);
  if (!Array.isArray(args)) fail(`--args must be a JSON array, got ${json}`);
  return args;
}

async function deploy(provider) {
  const contracts = await compile();
  const signer = await provider.getSigner(0);
  const addresses = {};
  for (const [name, key] of [["Rooms", "rooms"], ["Ticket", "ticket"]]) {
    const { abi, bytecode } = contracts[name];
    const contract = await new ContractFactory(abi, bytecode, signer).deploy();
    await contract.waitForDeployment();
    addresses[key] = await contract.getAddress();
  }
  return addresses;
}

async function send(provider, opts) {
  if (!opts.to) fail("--to is required");
  const { iface, fn } = fragment(opts.sig, false);
  const data = iface.encodeFunctionData(fn, parsedArgs(opts.args));
  const signer = await provider.getSigner(Number(opts.from));
  const tx = await signer.sendTransaction({ to: opts.to, data });
  const receipt = await tx.wait();
  if (receipt.status !== 1) fail(`transaction ${tx.hash} reverted`);
  return { tx: tx.hash, block: receipt.blockNumber, status: receipt.status };
}

async function call(provider, opts) {
  if (!opts.to) fail("--to is required");
  const { iface, fn } = fragment(opts.sig, true);
  const data = iface.encodeFunctionData(fn, parsedArgs(opts.args));
  const raw = await provider.call({ to: opts.to, data });
  if (fn.outputs.length === 0) return raw;
  const result = iface.decodeFunctionResult(fn, raw);
  return fn.outputs.length === 1 ? plain(result[0]) : plain(result);
}

const opts = options();
const provider = new JsonRpcProvider(opts.rpc, undefined, { pollingInterval: POLL_MS });
const commands = {
  deploy: () => deploy(provider),
  send: () => send(provider, opts),
  call: () => call(provider, opts),
};
if (!(opts.command in commands)) fail(`unknown command ${opts.command} (deploy, send or call)`);
try {
  const result = await commands[opts.command]();
  process.stdout.write(JSON.stringify(result) + "\n");
} catch (error) {
  // ganache's own words ("VM Exception while processing transaction: revert") say more than
  // ethers' summary of them ("missing revert data").
  const node = error.info?.error?.message;
  const summary = error.shortMessage ?? error.message;
  fail(node ? `${summary} (${node})` : summary);
} finally {
  provider.destroy();
}
