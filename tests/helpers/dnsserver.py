"""A tiny DNS server for tests: UDP on 127.0.0.1, a free port. It answers A
questions from `records` (name -> IPv4 address, or a list of them: one
A record each; changeable while it runs) with `ttl`; a known name has no other records (an empty NOERROR answer), an
unknown one is NXDOMAIN. `answering = False` makes it read and hold every
question unanswered; release() then answers the held ones. `questions` lists (name, qtype) as they came;
`queries(name)` counts distinct A queries (a resolver's retransmission keeps
its query id, a new query has a new one)."""

import socket
import struct

from polledserver import PolledServer

QTYPE_A = 1


class DnsServer(PolledServer):
    def __init__(self, records=None, ttl=60):
        self.records = dict(records or {})
        self.ttl = ttl
        self.answering = True
        self.questions = []
        self.ids = []
        self.held = []
        PolledServer.__init__(self, socket.SOCK_DGRAM)
        self.addr = "127.0.0.1:%d" % self.port

    def a_questions(self, name):
        return sum(1 for n, t in self.questions if n == name.lower() and t == QTYPE_A)

    def queries(self, name):
        return len({i for n, t, i in self.ids if n == name.lower() and t == QTYPE_A})

    def serve_one(self):
        data, peer = self.sock.recvfrom(4096)
        reply = self._answer(data)
        if reply and self.answering:
            self.sock.sendto(reply, peer)
        elif reply:
            self.held.append((data, peer))

    def release(self):
        """Answers the questions held so far (as the records are now)."""
        held, self.held = self.held, []
        for data, peer in held:
            self.sock.sendto(self._answer(data), peer)

    def _answer(self, data):
        if len(data) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1:
            return None
        labels, i = [], 12
        while i < len(data) and data[i]:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        i += 1
        if i + 4 > len(data):
            return None
        qtype, _qclass = struct.unpack("!HH", data[i:i + 4])
        question = data[12:i + 4]
        name = ".".join(labels).lower()
        self.questions.append((name, qtype))
        self.ids.append((name, qtype, qid))
        rd = flags & 0x0100
        known = name in self.records
        answers = b""
        ancount = 0
        if known and qtype == QTYPE_A:
            addrs = self.records[name]
            for a in [addrs] if isinstance(addrs, str) else addrs:
                answers += struct.pack("!HHHIH", 0xC00C, QTYPE_A, 1, self.ttl, 4) + socket.inet_aton(a)
                ancount += 1
        rcode = 0 if known else 3
        header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, ancount, 0, 0)
        return header + question + answers
