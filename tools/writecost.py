"""What one charger command costs in heap, per driver family, on the MicroPython unix ports.

    .venv/bin/python tools/writecost.py [64|32 ...]

Starts the boxes here (CPython threads on 127.0.0.1: one HTTP server that
answers the Trydan's, go-e's, OpenEVSE's and Shelly's write requests as
the boxes do, one Modbus TCP server that echoes function 6 and 16 writes),
then runs tools/writecost_upy.py on the 64-bit port (.venv/bin/micropython)
and/or the 32-bit one (tools/upy32.py plain) against them. Each line is
"<case> <min> <max>": heap bytes one command allocates (gc.mem_alloc()
around the awaited call, collector off), min and max over a few commands
once warm. The boxes run in another process, so none of their allocation
is counted. Needs `make build` first (build/device).
"""

import os
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ANSWERS = (
    (b"/write/", b"OK"),  # V2C Trydan
    (b"/api/set?tcl=", b'{"tcl":true}'),  # go-e API v2
    (b"/api/set?frc=", b'{"frc":true}'),
    (b"/claims/", b'{"msg":"done"}'),  # OpenEVSE
    (b"/rpc/Switch.Set", b'{"was_on":false}'),  # Shelly Gen2+
)


def _serve(listener, handle):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def _http(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(1024)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(1024)
        path = head.split(b" ")[1]
        body = b"not found"
        status = b"404 Not Found"
        for prefix, answer in _ANSWERS:
            if path.startswith(prefix):
                body, status = answer, b"200 OK"
        conn.sendall(b"HTTP/1.0 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def _modbus(conn):
    with conn:
        data = b""
        while True:
            chunk = conn.recv(1024)
            if not chunk:
                return
            data += chunk
            while len(data) >= 6 and len(data) >= 6 + (data[4] << 8 | data[5]):
                size = 6 + (data[4] << 8 | data[5])
                frame, data = data[:size], data[size:]
                function = frame[7]
                if function in (5, 6):
                    conn.sendall(frame[:12])  # the echo
                elif function == 16:
                    conn.sendall(frame[:4] + b"\x00\x06" + frame[6:12])
                else:
                    count = frame[10] << 8 | frame[11]
                    pdu = bytes((function, 2 * count)) + bytes(2 * count)
                    conn.sendall(frame[:4] + bytes((0, len(pdu) + 1, frame[6])) + pdu)


def _listen(handle):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    threading.Thread(target=_serve, args=(listener, handle), daemon=True).start()
    return listener


def run(ports=("64", "32")):
    """{port: {case: (min, max)}} for the ports asked ("64", "32")."""
    listeners = (_listen(_http), _listen(_modbus))
    try:
        return _measure(ports, [listener.getsockname()[1] for listener in listeners])
    finally:
        for listener in listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes its accept() (Linux): the serving thread ends
            except OSError:
                pass
            listener.close()


def _measure(ports, box_ports):
    script = os.path.join(ROOT, "tools", "writecost_upy.py")
    args = [os.path.join(ROOT, "build", "device")] + [str(port) for port in box_ports]
    results = {}
    for bits in ports:
        if bits == "64":
            command = [os.path.join(ROOT, ".venv", "bin", "micropython"), script] + args
        else:
            command = [sys.executable, os.path.join(ROOT, "tools", "upy32.py"), "--exec", "plain", "--", script] + args
        out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
        if out.returncode:
            raise RuntimeError("%s-bit port: %s%s" % (bits, out.stdout, out.stderr))
        table = results[bits] = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if line.startswith("32-bit unix port"):
                continue  # upy32.py says which binary runs
            if len(parts) != 3 or not parts[1].isdigit():
                raise RuntimeError("%s-bit port: %s%s" % (bits, out.stdout, out.stderr))
            name, low, high = parts
            table[name] = (int(low), int(high))
    return results


def main(argv):
    ports = argv or ["64", "32"]
    results = run(ports)
    names = list(results[ports[0]])
    print("%-26s" % "bytes per command" + "".join("%14s" % ("%s-bit min/max" % bits) for bits in ports))
    for name in names:
        print("%-26s" % name + "".join("%14s" % ("%d/%d" % results[bits][name]) for bits in ports))


if __name__ == "__main__":
    main(sys.argv[1:])
