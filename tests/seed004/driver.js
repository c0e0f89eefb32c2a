// Runs seed 004's frontend example (frontend_example.js, copied unchanged from the seed's
// "Frontend Implementation Example") against a hub. Only its two placeholders, the token and
// the server's address, are filled in at load time. Prints one JSON object per line: every
// console.log of the example as {"event":"log"}, and every showNotification call as
// {"event":"notification"}.
'use strict';
const fs = require('fs');
const path = require('path');

const [server, token] = process.argv.slice(2);
const print = console.log;
const emit = (event, payload) => print(JSON.stringify({ event, payload }));
console.log = (...args) => emit('log', args);
globalThis.showNotification = (notification) => emit('notification', notification);

const source = fs
  .readFileSync(path.join(__dirname, 'frontend_example.js'), 'utf8')
  .replace('"your-jwt-token"', JSON.stringify(token))
  .replace('ws://localhost:8000', server);
new Function(source)();
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
