#!/usr/bin/env node
// Interop check with an SMPP client nobody here wrote (node-smpp, from npm).
//
// Binds as a transceiver to otpgw, submits N messages asking for delivery receipts,
// and waits for the receipts. Succeeds (exit 0) when every submit was acknowledged
// with a distinct message id, exactly one receipt arrived for each, and (with
// --own-only) no receipt arrived for a message this client did not submit. With
// --query it then asks query_sm for some of its messages (each must answer DELIVERED
// with a final date) and for an id the gateway never gave (ESME_RQUERYFAIL). Prints
// a one-line JSON summary. Bounded: gives up after --timeout s.
'use strict';
const smpp = require('smpp');

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const host = arg('host', '127.0.0.1');
const port = Number(arg('port', '2775'));
const systemId = arg('system-id', 'demo');
const password = arg('password', 'demo');
const count = Number(arg('count', '50'));
const timeout = Number(arg('timeout', '30'));
const prefix = arg('prefix', '4478');
const ownOnly = process.argv.includes('--own-only');
const query = process.argv.includes('--query');
// Submit with data_sm (text in message_payload) instead of submit_sm.
const dataSm = process.argv.includes('--data-sm');
const queries = {};

const ids = new Set();
const receipts = new Map();
let foreign = 0;
let refused = 0;

const session = smpp.connect({ url: `smpp://${host}:${port}` });
session.on('error', (e) => finish(`connection error: ${e.message}`));

function summary() {
  const got = [...ids].filter((id) => receipts.get(id) === 1).length;
  const dup = [...receipts.values()].filter((n) => n > 1).length;
  return { ids: ids.size, own_receipts: got, duplicates: dup, foreign, refused, queries };
}

function done() {
  return ids.size + refused >= count && [...ids].every((id) => (receipts.get(id) || 0) >= 1);
}

let finished = false;
function finish(err) {
  if (finished) return;
  finished = true;
  const s = summary();
  const asked = Object.keys(queries);
  const queryOk = !query || (asked.length === 4 && asked.every((m) => m === 'ffffffffffffffff'
    ? queries[m][0] === 0x67
    : queries[m][0] === 0 && queries[m][1] === 2 && queries[m][2] !== ''));
  s.ok = !err && refused === 0 && s.ids === count && s.own_receipts === count && s.duplicates === 0 &&
    (!ownOnly || foreign === 0) && queryOk;
  if (err) s.error = err;
  if (!s.ok) s.missing = [...ids].filter((id) => !receipts.has(id));
  console.log(JSON.stringify(s));
  try { session.close(); } catch (e) { /* closing anyway */ }
  process.exit(s.ok ? 0 : 1);
}

setTimeout(() => finish('timed out'), timeout * 1000);

session.on('deliver_sm', (pdu) => {
  const rid = String(pdu.receipted_message_id || '');
  if (ids.has(rid)) {
    receipts.set(rid, (receipts.get(rid) || 0) + 1);
  } else {
    foreign += 1;
  }
  session.send(pdu.response());
  if (done()) setTimeout(query ? ask : finish, 300);
});

let asking = false;
function ask() {
  if (asking) return;
  asking = true;
  const asked = [...ids].slice(0, 3).concat(['ffffffffffffffff']);
  for (const m of asked) {
    session.query_sm({ message_id: m }, (pdu) => {
      // node-smpp parses the SMPP time into a Date: a valid final date is one.
      const fd = pdu.final_date instanceof Date && !isNaN(pdu.final_date) ? pdu.final_date.toISOString() : '';
      queries[m] = [pdu.command_status, pdu.message_state, fd];
      if (Object.keys(queries).length === asked.length) finish();
    });
  }
}

session.bind_transceiver({ system_id: systemId, password: password }, (pdu) => {
  if (pdu.command_status !== 0) return finish(`bind refused: ${pdu.command_status}`);
  for (let i = 0; i < count; i++) {
    const msg = {
      source_addr_ton: 5,
      source_addr: 'NODEJS',
      dest_addr_ton: 1,
      dest_addr_npi: 1,
      destination_addr: prefix + String(i).padStart(8, '0'),
      registered_delivery: 1,
    };
    const text = 'Your code is ' + String(i).padStart(6, '0');
    const send = dataSm
      ? (cb) => session.data_sm(Object.assign(msg, { message_payload: text }), cb)
      : (cb) => session.submit_sm(Object.assign(msg, { short_message: text, priority_flag: 1 }), cb);
    send((resp) => {
      if (resp.command_status === 0) {
        ids.add(String(resp.message_id));
      } else {
        refused += 1;
      }
    });
  }
});
