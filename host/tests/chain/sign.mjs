// Signs a chain-auth token the way a wallet would, with the wallets' own libraries
// (@polkadot/keyring for sr25519 and ed25519, ethers for EIP-191 personal_sign), so the
// chain-auth plugin is tested against independent implementations rather than its own code.
//
//   node sign.mjs --scheme sr25519|ed25519|eip191 --seed <seed> --room <room>
//                 [--action publish|play] [--ts <ms>] [--template 'livestream:{room}:{timestamp}']
//                 [--wrap] [--ss58 <prefix>] [--count <n>]
//
// Prints one JSON line: {"token": "...", "address": "...", "message": "..."}.
// With --count N (default 1) it signs N tokens in this one process, with timestamps ts, ts+1,
// ..., ts+N-1 (so every message, and so every signature, differs), and prints one such line
// per token in that order: for benchmarks, which need a fresh signature per session.
//
// - message: the template with {room}, {timestamp} (= ts, default now) and {action}
//   (default publish) substituted.
// - sr25519/ed25519: the seed is a secret URI (`//Alice`, a mnemonic, a mnemonic with a
//   derivation path); the address is SS58 (prefix 42 unless --ss58). The signed bytes are the
//   UTF-8 message, or with --wrap `<Bytes>message</Bytes>` as browser extensions sign.
// - eip191: the seed is a 0x-prefixed 32-byte private key or a BIP-39 mnemonic (first account,
//   m/44'/60'/0'/0/0); the signature is personal_sign's 65 bytes, the address checksummed.
// - token: base64url without padding of the UTF-8 JSON {"scheme","address","ts","sig"}, ts a
//   number of milliseconds and sig 0x-prefixed hex.

import { parseArgs } from "node:util";
import { Keyring } from "@polkadot/keyring";
import { stringToU8a, u8aToHex, u8aWrapBytes } from "@polkadot/util";
import { cryptoWaitReady } from "@polkadot/util-crypto";
import { Wallet } from "ethers";

const DEFAULT_TEMPLATE = "livestream:{room}:{timestamp}";
const PRIVATE_KEY = /^0x[0-9a-fA-F]{64}$/;

function fail(why) {
  process.stderr.write(`sign.mjs: ${why}\n`);
  process.exit(2);
}

function options() {
  const { values } = parseArgs({
    options: {
      scheme: { type: "string" },
      seed: { type: "string" },
      room: { type: "string" },
      action: { type: "string", default: "publish" },
      ts: { type: "string" },
      template: { type: "string", default: DEFAULT_TEMPLATE },
      wrap: { type: "boolean", default: false },
      ss58: { type: "string" },
      count: { type: "string", default: "1" },
    },
    strict: true,
  });
  for (const required of ["scheme", "seed", "room"]) {
    if (values[required] === undefined) fail(`--${required} is required`);
  }
  const ts = values.ts === undefined ? Date.now() : Number(values.ts);
  if (!Number.isSafeInteger(ts) || ts < 0) fail(`--ts must be milliseconds, got ${values.ts}`);
  const ss58 = values.ss58 === undefined ? 42 : Number(values.ss58);
  if (!Number.isInteger(ss58) || ss58 < 0 || ss58 > 16383) fail(`bad --ss58 ${values.ss58}`);
  const count = Number(values.count);
  if (!Number.isSafeInteger(count) || count < 1) fail(`--count must be at least 1, got ${values.count}`);
  if (!Number.isSafeInteger(ts + count - 1)) fail(`--ts plus --count is too large`);
  return { ...values, ts, ss58, count };
}

/// The template with its placeholders filled; every occurrence, not just the first.
function message({ template, room, ts, action }) {
  return template
    .replaceAll("{room}", room)
    .replaceAll("{timestamp}", String(ts))
    .replaceAll("{action}", action);
}

/// A signer for the seed, made once: `sign(text)` gives `{address, sig}`.
async function polkadotSigner(type, opts) {
  await cryptoWaitReady();
  const pair = new Keyring({ type, ss58Format: opts.ss58 }).addFromUri(opts.seed);
  return async (text) => {
    const bytes = opts.wrap ? u8aWrapBytes(text) : stringToU8a(text);
    return { address: pair.address, sig: u8aToHex(pair.sign(bytes)) };
  };
}

async function ethereumSigner(opts) {
  if (opts.wrap) fail("--wrap is for sr25519/ed25519; eip191 has its own prefix");
  const wallet = PRIVATE_KEY.test(opts.seed) ? new Wallet(opts.seed) : Wallet.fromPhrase(opts.seed);
  return async (text) => ({ address: wallet.address, sig: await wallet.signMessage(text) });
}

const opts = options();
let sign;
switch (opts.scheme) {
  case "sr25519":
  case "ed25519":
    sign = await polkadotSigner(opts.scheme, opts);
    break;
  case "eip191":
    sign = await ethereumSigner(opts);
    break;
  default:
    fail(`unknown --scheme ${opts.scheme} (sr25519, ed25519 or eip191)`);
}
const lines = [];
for (let i = 0; i < opts.count; i++) {
  const ts = opts.ts + i;
  const text = message({ ...opts, ts });
  const signed = await sign(text);
  const claims = { scheme: opts.scheme, address: signed.address, ts, sig: signed.sig };
  const token = Buffer.from(JSON.stringify(claims), "utf8").toString("base64url");
  lines.push(JSON.stringify({ token, address: signed.address, message: text }) + "\n");
}
process.stdout.write(lines.join(""));
