"""Which ring devices are this host's: the addresses this host answers on."""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct

_SIOCGIFADDR = 0x8915


def local_ips(bind_ip: str) -> set[str]:
    """This host's addresses (Swift's ``whataremyips``).

    ``bind_ip`` itself when it names one address; for a wildcard, loopback,
    what the host name resolves to and every interface's IPv4 address (read
    with an ioctl: no packet is sent anywhere). Blocking (resolver): call it
    through ``asyncio.to_thread`` from a running loop.
    """
    if bind_ip not in ("0.0.0.0", "::", ""):
        return {bind_ip}
    ips = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(
                    s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15])
                )
            except OSError:
                continue
            ips.add(socket.inet_ntoa(packed[20:24]))
    return ips
