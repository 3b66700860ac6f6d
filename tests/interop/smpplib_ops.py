#!/usr/bin/env python3
"""The SMPP operations brands use, from python-smpplib (PyPI), which has no
replace_sm, cancel_sm or submit_multi (node_smpp_ops.js covers those).

Against a gateway whose carrier takes one message a second, one transceiver bind:
  A     submit_sm to <prefix>01; after --settle-ms (A is at the carrier):
  D     submit_sm to <prefix>04;
  D2    submit_sm to <prefix>04 with replace_if_present_flag = 1 (replaces D);
  sar1..3  three parts of one long text to <prefix>05 with sar_ TLVs (ref 0x4321);
every submission asking for a receipt. Prints one JSON line with each submission's
command_status and id and the receipts (id -> states) that came within --timeout s;
the test checks them and what the carrier got.
"""
import argparse
import json
import sys
import time

import smpplib.client
import smpplib.consts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--prefix", default="4474009100")
    ap.add_argument("--settle-ms", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()

    status, ids, receipts = {}, {}, {}
    names = {}  # sequence -> name
    expect = 5  # A, D (replaced), three parts

    client = smpplib.client.Client("127.0.0.1", a.port, timeout=1, allow_unknown_opt_params=True)

    def on_sent(pdu):
        name = names.get(pdu.sequence, "?")
        status[name] = pdu.status
        if pdu.status == 0:
            mid = pdu.message_id
            ids[name] = mid.decode() if isinstance(mid, bytes) else str(mid)

    def on_error(pdu):
        status[names.get(pdu.sequence, "?")] = pdu.status

    def on_received(pdu):
        rid = pdu.receipted_message_id
        rid = rid.decode() if isinstance(rid, bytes) else str(rid)
        text = pdu.short_message.decode("ascii", "replace") if pdu.short_message else ""
        state = text.split("stat:")[1].split()[0] if "stat:" in text else "?"
        receipts.setdefault(rid, []).append(state)
        return 0

    client.set_message_sent_handler(on_sent)
    client.set_error_pdu_handler(on_error)
    client.set_message_received_handler(on_received)
    client.connect()
    client.bind_transceiver(system_id="bank", password="pw1")

    def submit(name, dest, text, **extra):
        p = client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="PYOPS",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=a.prefix + dest,
            short_message=text,
            data_coding=smpplib.consts.SMPP_ENCODING_DEFAULT,
            esm_class=0,
            priority_flag=1,
            registered_delivery=True,
            **extra,
        )
        names[p.sequence] = name
        # Each answer before the next request: the order of the steps matters.
        until = time.time() + 5
        while name not in status and time.time() < until:
            try:
                client.read_once()
            except smpplib.exceptions.ConnectionError:
                return
            except Exception:
                pass

    submit("A", "01", b"Your code is 111111")
    time.sleep(a.settle_ms / 1000)
    submit("D", "04", b"Your code is 444444")
    submit("D2", "04", b"Your code is 555555", replace_if_present_flag=1)
    parts = [b"This long message was split ", b"by the brand itself and sent ", b"as three parts with sar TLVs."]
    for i, p in enumerate(parts):
        submit("sar%d" % (i + 1), "05", p, sar_msg_ref_num=0x4321, sar_total_segments=3, sar_segment_seqnum=i + 1)

    deadline = time.time() + a.timeout
    while sum(len(v) for v in receipts.values()) < expect and time.time() < deadline:
        try:
            client.read_once()
        except smpplib.exceptions.ConnectionError:
            break
        except Exception:
            pass
    time.sleep(0.3)
    try:
        client.poll()
        client.unbind()
        client.disconnect()
    except Exception:
        pass
    print(json.dumps({"status": status, "ids": ids, "receipts": receipts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
