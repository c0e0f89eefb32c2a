// A real SMTP server for the end-to-end tests: nodemailer's `smtp-server` (npm), with
// STARTTLS and AUTH when asked for.
//
//   node tests/peers/smtp.mjs [--tls-key key.pem --tls-cert cert.pem] [--user U --pass P]
//
// Prints `listening <port>` once bound, then one JSON line per accepted message:
// {"from": ..., "to": [...], "data": "<raw message>", "user": ..., "secure": bool}.
// Reads commands on stdin: `down` (answer 421 to every new connection) and `up`.
// Recipients at `@invalid.test` are refused with 550.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { SMTPServer } from "smtp-server";

const args = process.argv.slice(2);
const arg = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const key = arg("--tls-key");
const cert = arg("--tls-cert");
const user = arg("--user");
const pass = arg("--pass");
let down = false;

const server = new SMTPServer({
  name: "smtp.test",
  banner: "tickethub test peer",
  secure: false,
  // Without a certificate, no STARTTLS is offered; with one, it is.
  disabledCommands: key ? [] : ["STARTTLS"],
  key: key ? readFileSync(key) : undefined,
  cert: cert ? readFileSync(cert) : undefined,
  // AUTH is required when a user is set, and then only over TLS (the library's default).
  authOptional: !user,
  allowInsecureAuth: false,
  authMethods: ["PLAIN", "LOGIN"],
  logger: false,
  // Loopback only: no reverse DNS lookup before the greeting.
  disableReverseLookup: true,
  onConnect(_session, callback) {
    if (down) {
      const err = new Error("test server is down");
      err.responseCode = 421;
      return callback(err);
    }
    callback();
  },
  onAuth(auth, _session, callback) {
    if (auth.username === user && auth.password === pass) {
      return callback(null, { user: auth.username });
    }
    const err = new Error("Invalid username or password");
    err.responseCode = 535;
    callback(err);
  },
  onRcptTo(address, _session, callback) {
    if (address.address.endsWith("@invalid.test")) {
      const err = new Error("no such user");
      err.responseCode = 550;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on("data", (c) => chunks.push(c));
    stream.on("end", () => {
      process.stdout.write(
        JSON.stringify({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString("utf8"),
          user: session.user ?? null,
          secure: Boolean(session.secure),
        }) + "\n",
      );
      callback(null, "OK queued");
    });
  },
});
server.on("error", (e) => process.stderr.write(`smtp peer: ${e.message}\n`));

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "down") down = true;
  if (line.trim() === "up") down = false;
  process.stdout.write(`ok ${line.trim()}\n`);
});
// The test process holds stdin; when it goes, so does this server.
process.stdin.on("end", () => process.exit(0));

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.server.address().port}\n`);
});
