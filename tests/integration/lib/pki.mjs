// Test certificates made with the openssl tool: a CA and, for each name given, a P-256
// key and a certificate for localhost and 127.0.0.1 that the CA signs (CN parley-<name>).
// Files in dir: ca.pem, ca.key, <name>.pem, <name>.key.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

export function makePki(dir, names = ["one"]) {
  const ossl = (...args) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  ossl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Parley test CA");
  fs.writeFileSync(path.join(dir, "san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  for (const name of names) {
    ossl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=parley-${name}`);
    ossl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", `${name}.pem`);
  }
  return { dir, ca: fs.readFileSync(path.join(dir, "ca.pem")), caFile: path.join(dir, "ca.pem") };
}
