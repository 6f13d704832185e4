#!/usr/bin/env python3
"""fake-mx.py PORT: a scripted receiving mail server for .ci/screenshots.sh.

Accepts mail on 127.0.0.1:PORT and answers as real servers do, so the
screenshots show a queue with every state: recipients at outlook.com are
greylisted (451), local parts starting with "old." do not exist (550), and
the rest is accepted. Only the standard library; one thread per client.
"""
import socketserver
import sys


class Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 mx.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800")
            elif verb == "MAIL":
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                to = cmd.split(":", 1)[1].strip().strip("<>").lower()
                if to.endswith("@outlook.com"):
                    self.reply("451 4.7.1 Greylisted, please try again in 5 minutes")
                elif to.startswith("old."):
                    self.reply("550 5.1.1 <%s>: Recipient address rejected: User unknown" % to)
                else:
                    self.reply("250 2.1.5 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                while self.rfile.readline().rstrip(b"\r\n") != b".":
                    pass
                self.reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
