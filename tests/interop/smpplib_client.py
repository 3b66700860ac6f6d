#!/usr/bin/env python3
"""Interop check with an SMPP client nobody here wrote (python-smpplib, from PyPI).

Binds as a transceiver to otpgw, submits N messages asking for delivery receipts
(GSM text and UCS-2 text), and waits for the receipts. Succeeds (exit 0) when every
submit was acknowledged with a distinct message id and exactly one receipt arrived
for each id. Prints a one-line JSON summary. Bounded: gives up after --timeout s.
"""
import argparse
import json
import sys
import time

import smpplib.client
import smpplib.consts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--system-id", default="demo")
    ap.add_argument("--password", default="demo")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()

    seq_to_id = {}
    receipts = {}
    states = {}

    client = smpplib.client.Client(a.host, a.port, timeout=2, allow_unknown_opt_params=True)

    def on_sent(pdu):
        if pdu.status == 0:
            mid = pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else str(pdu.message_id)
            seq_to_id[pdu.sequence] = mid

    def on_received(pdu):
        rid = pdu.receipted_message_id
        rid = rid.decode() if isinstance(rid, bytes) else str(rid)
        receipts[rid] = receipts.get(rid, 0) + 1
        text = pdu.short_message.decode("ascii", "replace") if pdu.short_message else ""
        states[rid] = text.split("stat:")[1].split()[0] if "stat:" in text else "?"
        return 0  # ESME_ROK in deliver_sm_resp

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.connect()
    client.bind_transceiver(system_id=a.system_id, password=a.password)

    for i in range(a.count):
        if i % 5 == 4:
            text, coding = "Код: %06d" % i, smpplib.consts.SMPP_ENCODING_ISO10646
            sm = text.encode("utf-16-be")
        else:
            text, coding = "Your code is %06d" % i, smpplib.consts.SMPP_ENCODING_DEFAULT
            sm = text.encode("ascii")
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="INTEROP",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="4477%08d" % i,
            short_message=sm,
            data_coding=coding,
            esm_class=0,
            priority_flag=1,
            registered_delivery=True,
        )

    deadline = time.time() + a.timeout
    while time.time() < deadline:
        if len(seq_to_id) >= a.count and all(receipts.get(m, 0) >= 1 for m in seq_to_id.values()):
            break
        try:
            client.read_once()
        except smpplib.exceptions.ConnectionError:
            break
        except Exception:  # socket timeout: keep waiting until the deadline
            pass
    try:
        client.unbind()
        client.disconnect()
    except Exception:
        pass

    ids = list(seq_to_id.values())
    ok = (
        len(ids) == a.count
        and len(set(ids)) == a.count
        and all(receipts.get(m) == 1 for m in ids)
        and not (set(receipts) - set(ids))
    )
    print(json.dumps({
        "ok": ok,
        "submitted": a.count,
        "acknowledged": len(ids),
        "distinct_ids": len(set(ids)),
        "receipts": sum(receipts.values()),
        "states": {s: list(states.values()).count(s) for s in set(states.values())},
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
