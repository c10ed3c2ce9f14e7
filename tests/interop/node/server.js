// Interop server: Node's `ws` package, with or without perMessageDeflate.
// Run: node server.js [--port PORT] [--deflate]; speaks the protocol of
// tests/interop/protocol.py and prints `ready PORT` once it listens.
'use strict';

const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const portAt = args.indexOf('--port');
const port = portAt >= 0 ? Number(args[portAt + 1]) : 0;
const deflate = args.includes('--deflate');
const server = deflate ? 'node-ws-deflate' : 'node-ws-plain';
const MAX_SIZE = 4 * 1024 * 1024;
const HOLD_MS = 20; // protocol.HOLD

const tally = { connections: 0, closes: new Map(), pings: 0, pongs: 0 };

function parse(data, isBinary) {
  if (isBinary || data.length > 64) return null;
  const [name, ...rest] = data.toString('utf8').split(' ');
  const arity = { close: 1, flood: 2, notify: 0, ping: 0, stats: 0 }[name];
  if (arity === undefined || rest.length !== arity || !rest.every((a) => /^[0-9]+$/.test(a))) {
    return null;
  }
  return { name, args: rest.map(Number) };
}

function floodMessage(number, size) {
  const prefix = `${number}:`;
  return prefix + 'x'.repeat(Math.max(0, size - prefix.length));
}

function notification(number) {
  const message = JSON.stringify({ text: `notification ${number} from ${server}` });
  return JSON.stringify({ Id: `${server}-${number}`, Object: '', Message: message });
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: deflate,
  maxPayload: MAX_SIZE,
});

wss.on('listening', () => {
  process.stdout.write(`ready ${wss.address().port}\n`);
});

wss.on('connection', (ws) => {
  tally.connections += 1;
  const number = tally.connections;
  const socket = ws._socket; // the TCP socket: its bytesRead are the bytes on the wire
  const wireStart = socket.bytesRead;
  let closing = false;

  ws.on('pong', () => {
    tally.pongs += 1;
  });
  ws.on('close', (code) => {
    if (!closing) {
      tally.closes.set(number, code);
      while (tally.closes.size > 100) tally.closes.delete(tally.closes.keys().next().value);
    }
  });
  ws.on('message', (data, isBinary) => {
    const command = parse(data, isBinary);
    if (command === null) {
      ws.send(data, { binary: isBinary });
      return;
    }
    const { name, args: values } = command;
    if (name === 'close') {
      closing = true;
      ws.close(values[0]);
    } else if (name === 'flood') {
      for (let i = 0; i < values[0]; i += 1) ws.send(floodMessage(i, values[1]));
    } else if (name === 'notify') {
      ws.send(notification(number));
    } else if (name === 'ping') {
      // A ping now crosses a close that came in the same chunk (ws parses it
      // next); else the socket stops reading, so that the client's close waits
      // in the kernel, and a second ping goes after the hold.
      ws.ping();
      tally.pings += 1;
      socket.pause();
      setTimeout(() => {
        if (ws.readyState === ws.OPEN) {
          ws.ping();
          tally.pings += 1;
        }
        socket.resume();
      }, HOLD_MS);
    } else {
      ws.send(
        JSON.stringify({
          server,
          connection: number,
          connections: tally.connections,
          closes: Object.fromEntries(tally.closes),
          pings: tally.pings,
          pongs: tally.pongs,
          compressed: ws.extensions.includes('permessage-deflate'),
          extensions: ws.extensions,
          wire_bytes_received: socket.bytesRead - wireStart,
        }),
      );
    }
  });
});
