#!/usr/bin/env node
// The SMPP operations brands use, from a client nobody here wrote (node-smpp, npm).
//
// Against a gateway whose carrier takes one message a second (so what follows the
// first stays queued a while), one transceiver bind:
//   A  submit_sm to <prefix>01, then (after --settle-ms, A is at the carrier):
//   B  submit_sm to <prefix>02, C to <prefix>03, D to <prefix>04;
//   replace_B    replace_sm of B with a new text (B still queued);
//   replace_A    replace_sm of A (at the carrier already);
//   replace_none replace_sm of an id the gateway never gave;
//   cancel_C     cancel_sm of C (still queued);
//   D2           submit_sm to <prefix>04 with replace_if_present_flag = 1 (replaces D);
//   sar1..3      three parts of one long text to <prefix>05 with sar_ TLVs (ref 0x1234);
//   multi        submit_multi to <prefix>06, <prefix>07, a distribution list and a
//                number that is not one (the last two come back in unsuccess_sme);
// every submission asking for a receipt. It prints one JSON line with each
// request's command_status, each submission's id and the receipts (id -> states)
// that came within --timeout s; the test checks them and what the carrier got.
'use strict';
const smpp = require('smpp');

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const port = Number(arg('port', '2775'));
const prefix = arg('prefix', '4474009000');
const settleMs = Number(arg('settle-ms', '500'));
const timeout = Number(arg('timeout', '30'));
const expectReceipts = 9; // A, B, C (deleted), D, three parts, two numbers of multi

const status = {};
const ids = {};
const receipts = {};
let unsuccess = [];
let count = 0;
const session = smpp.connect({ url: `smpp://127.0.0.1:${port}` });
session.on('error', (e) => finish(`connection error: ${e.message}`));

let finished = false;
function finish(err) {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ error: err || null, status, ids, receipts, unsuccess }));
  try { session.close(); } catch (e) { /* closing anyway */ }
  process.exit(err ? 1 : 0);
}
setTimeout(() => finish(count >= expectReceipts ? null : 'timed out'), timeout * 1000);

session.on('deliver_sm', (pdu) => {
  const id = String(pdu.receipted_message_id || '');
  const sm = pdu.short_message || '';
  const text = String(typeof sm === 'object' && 'message' in sm ? sm.message : sm);
  const m = /stat:(\w+)/.exec(text);
  (receipts[id] = receipts[id] || []).push(m ? m[1] : '?');
  count += 1;
  session.send(pdu.response());
  if (count >= expectReceipts) setTimeout(() => finish(null), 500);
});

function call(op, name, params) {
  return new Promise((resolve) => {
    session[op](params, (pdu) => {
      status[name] = pdu.command_status;
      if (pdu.message_id) ids[name] = String(pdu.message_id);
      resolve(pdu);
    });
  });
}

function sms(dest, text, extra) {
  return Object.assign({
    source_addr_ton: 5,
    source_addr: 'NODEOPS',
    dest_addr_ton: 1,
    dest_addr_npi: 1,
    destination_addr: prefix + dest,
    registered_delivery: 1,
    priority_flag: 1,
    short_message: text,
  }, extra || {});
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

session.bind_transceiver({ system_id: 'bank', password: 'pw1' }, async (pdu) => {
  if (pdu.command_status !== 0) return finish(`bind refused: ${pdu.command_status}`);
  await call('submit_sm', 'A', sms('01', 'Your code is 111111'));
  await sleep(settleMs);
  await call('submit_sm', 'B', sms('02', 'Your code is 222222'));
  await call('submit_sm', 'C', sms('03', 'Your code is 333333'));
  await call('submit_sm', 'D', sms('04', 'Your code is 444444'));
  await call('replace_sm', 'replace_B', {
    message_id: ids.B, source_addr: 'NODEOPS', registered_delivery: 1, short_message: 'Your code is 999999',
  });
  await call('replace_sm', 'replace_A', { message_id: ids.A, short_message: 'Your code is 000000' });
  await call('replace_sm', 'replace_none', { message_id: 'ffffffffffffffff', short_message: 'x' });
  await call('cancel_sm', 'cancel_C', { message_id: ids.C });
  await call('submit_sm', 'D2', sms('04', 'Your code is 555555', { replace_if_present_flag: 1 }));
  const parts = ['This long message was split ', 'by the brand itself and sent ', 'as three parts with sar TLVs.'];
  for (let i = 0; i < 3; i++) {
    await call('submit_sm', 'sar' + (i + 1), sms('05', parts[i], {
      sar_msg_ref_num: 0x1234, sar_total_segments: 3, sar_segment_seqnum: i + 1,
    }));
  }
  const multi = sms('', 'Your code is 777777', {
    dest_address: [
      { dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: prefix + '06' },
      { dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: prefix + '07' },
      { dl_name: 'staff' },
      { dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: '12ab' },
    ],
  });
  delete multi.destination_addr;
  delete multi.dest_addr_ton;
  delete multi.dest_addr_npi;
  const r = await call('submit_multi', 'multi', multi);
  unsuccess = (r.unsuccess_sme || []).map((u) => [String(u.destination_addr), u.error_status_code]);
});
