// npm-fetch.js PACKAGE@VERSION SHA512_BASE64 MEMBER DEST
// Fetches a package tarball from the npm registry (`npm pack`, no install scripts run), checks
// the registry's sha512 integrity, and extracts one member to DEST. Used by deploy/Dockerfile.
"use strict";
const { execFileSync } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const os = require("os");

const [spec, sha512, member, dest] = process.argv.slice(2);
if (!dest) {
  console.error("usage: npm-fetch.js PACKAGE@VERSION SHA512_BASE64 MEMBER DEST");
  process.exit(2);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "npm-fetch-"));
const tgz = path.join(dir, execFileSync("npm", ["pack", "--silent", spec], { cwd: dir }).toString().trim().split("\n").pop());
const got = crypto.createHash("sha512").update(fs.readFileSync(tgz)).digest("base64");
if (got !== sha512) {
  console.error(`npm-fetch: checksum mismatch for ${spec}: got sha512-${got}`);
  process.exit(1);
}
execFileSync("tar", ["-xzf", tgz, "-C", dir, member]);
fs.mkdirSync(path.dirname(dest), { recursive: true });
fs.copyFileSync(path.join(dir, member), dest);
fs.rmSync(dir, { recursive: true, force: true });
console.log(`npm-fetch: ${spec} ${member} -> ${dest}`);
