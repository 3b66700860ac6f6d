#!/usr/bin/env python3
"""Interop check with an SMPP client nobody here wrote (python-smpplib, from PyPI).

Binds as a transceiver to otpgw, submits N messages asking for delivery receipts
(GSM text and UCS-2 text), and waits for the receipts. Succeeds (exit 0) when every
submit was acknowledged with a distinct message id and exactly one receipt arrived
for each id. With --query, it then asks query_sm for some of its messages (each
must answer DELIVERED with a final date) and for an id the gateway never gave (must
answer ESME_RQUERYFAIL). Prints a one-line JSON summary. Bounded: gives up after
--timeout s.
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
    ap.add_argument("--query", action="store_true")
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

    queries = {}  # message id -> (status, message_state, final_date)
    query_seq = {}

    def on_query(pdu):
        mid = query_seq.get(pdu.sequence, "?")
        fd = pdu.final_date.decode() if isinstance(pdu.final_date, bytes) else str(pdu.final_date or "")
        queries[mid] = (pdu.status, pdu.message_state, fd)

    def on_error(pdu):
        if pdu.command == "query_sm_resp":
            queries[query_seq.get(pdu.sequence, "?")] = (pdu.status, None, "")
        else:
            raise smpplib.exceptions.PDUError("error %s" % pdu.status, pdu.status)

    client.set_query_resp_handler(on_query)
    client.set_error_pdu_handler(on_error)
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
            destination_addr="44740%07d" % i,
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
    query_ok = True
    if a.query:
        asked = list(seq_to_id.values())[:5] + ["ffffffffffffffff"]
        for mid in asked:
            q = client.query_message(
                message_id=mid,
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr_npi=0,
                source_addr="INTEROP",
            )
            query_seq[q.sequence] = mid
        qdeadline = time.time() + 10
        while len(queries) < len(asked) and time.time() < qdeadline:
            try:
                client.read_once()
            except smpplib.exceptions.ConnectionError:
                break
            except Exception:
                pass
        query_ok = all(
            queries.get(m, (None,))[0] == 0 and queries[m][1] == 2 and len(queries[m][2]) == 16
            for m in asked[:-1]
        ) and queries.get(asked[-1], (None,))[0] == 0x67
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
        and query_ok
    )
    print(json.dumps({
        "ok": ok,
        "submitted": a.count,
        "acknowledged": len(ids),
        "distinct_ids": len(set(ids)),
        "receipts": sum(receipts.values()),
        "states": {s: list(states.values()).count(s) for s in set(states.values())},
        "queries": {m: [q[0], q[1], q[2]] for m, q in queries.items()},
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
