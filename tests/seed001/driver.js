// Drives seed 001's NotificationService, loaded unchanged, from line commands on stdin.
// Prints one JSON object per line for every event; the class's own console.log lines pass through.
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');

// The class checks `'Notification' in window` to show browser notifications; Node has no window.
globalThis.window = {};
const source = fs.readFileSync(path.join(__dirname, 'notification_service.js'), 'utf8');
const NotificationService = new Function(`${source}\nreturn NotificationService;`)();

const [apiUrl, wsUrl, token] = process.argv.slice(2);
const service = new NotificationService(apiUrl, wsUrl, token);
const emit = (event, payload) => console.log(JSON.stringify({ event, payload }));
service.subscribe((notification) => emit('notification', notification));
service.connect();

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  try {
    switch (cmd) {
      case 'list': emit('list', await service.getNotifications(arg ? JSON.parse(arg) : {})); break;
      case 'count': emit('count', await service.getUnreadCount()); break;
      case 'read': emit('read', await service.markAsRead(Number(arg))); break;
      case 'readall': emit('readall', await service.markAllAsRead()); break;
      case 'exit': process.exit(0); break;
      default: emit('error', `unknown command ${cmd}`);
    }
  } catch (e) {
    emit('error', String(e));
  }
});
rl.on('close', () => process.exit(0));
