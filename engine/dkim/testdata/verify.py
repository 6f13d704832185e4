"""Verify a DKIM-signed message with dkimpy, an implementation independent of
go-msgauth, for Postroom's tests.

    verify.py --probe                    exit 0 and print "nacl=yes|no" when dkim imports, else exit 3
    verify.py MESSAGE KEYNAME RECORD     exit 0 when the signature verifies, 1 when not

KEYNAME is selector._domainkey.domain; RECORD is the TXT value served for it.
"""

import logging
import sys


def main(argv):
    if argv[1:] == ["--probe"]:
        try:
            import dkim  # noqa: F401
        except ImportError:
            print("the dkim module is missing")
            return 3
        try:
            import nacl.signing  # noqa: F401
        except ImportError:
            print("nacl=no")
            return 0
        print("nacl=yes")
        return 0

    import dkim

    path, keyname, record = argv[1:4]
    with open(path, "rb") as f:
        message = f.read()

    def dnsfunc(name, timeout=5):
        asked = name.decode() if isinstance(name, bytes) else name
        if asked.rstrip(".").lower() == keyname:
            return record.encode()
        print("unexpected DNS query for %r" % asked, file=sys.stderr)
        return None

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
    ok = dkim.verify(message, logger=logging.getLogger("dkim"), dnsfunc=dnsfunc)
    print("pass" if ok else "fail")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
