"""Parsing for ``swiftlite-ring-builder``: device strings, search values,
option forms and builder/ring file names.

Every accepted spelling and every error text follows ``swift-ring-builder``
(Swift 2.38) so that operators' scripts and habits carry over unchanged. The
grammar is a left-to-right scan of optional, letter-prefixed fields; errors
surface as ``ValueError`` whose text the CLI prints verbatim.
"""

from __future__ import annotations

import optparse
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

DIGITS = "0123456789"
IPV4_CHARS = "0123456789."

_HOST_LABEL = re.compile(r"(?!-)[A-Z\d-]{1,63}(?<!-)$", re.IGNORECASE)


# --------------------------------------------------------------------------
# Addresses


def is_valid_ipv4(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, ip)
    except (OSError, ValueError):
        return False
    return True


def is_valid_ipv6(ip: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):
        return False
    return True


def canonical_ipv6(ip: str) -> str:
    """The canonical (inet_ntop) spelling, so that searches and duplicate
    checks compare equal however the operator typed the address."""
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, ip))


def is_valid_hostname(hostname: str) -> bool:
    if not 1 <= len(hostname) <= 255:
        return False
    if hostname.endswith("."):
        hostname = hostname[:-1]
    return all(_HOST_LABEL.match(label) for label in hostname.split("."))


def normalize_ip(ip: str) -> str:
    """Lower-case and canonicalize an IP literal; anything else is an error."""
    low = ip.lower()
    if is_valid_ipv4(low):
        return low
    if is_valid_ipv6(low):
        return canonical_ipv6(low)
    raise ValueError(f"Invalid ip {ip}")


def normalize_address(address: str) -> str:
    """Like :func:`normalize_ip` but a host name is accepted too (option
    forms allow ``--ip host.example``); ``[...]`` forces an IP literal."""
    inner = address.lstrip("[").rstrip("]")
    if address.startswith("[") and address.endswith("]"):
        return normalize_ip(inner)
    inner = inner.lower()
    if is_valid_ipv4(inner):
        return inner
    if is_valid_ipv6(inner):
        return canonical_ipv6(inner)
    if is_valid_hostname(inner):
        return inner
    raise ValueError(f"Invalid address {address}")


def valid_device_name(name: str) -> bool:
    return bool(name) and not name.startswith(" ") and not name.endswith(" ")


# --------------------------------------------------------------------------
# Scanning helpers


def _span(text: str, start: int, ok: Callable[[str], bool]) -> int:
    """Index of the first character at or after ``start`` failing ``ok``."""
    end = start
    while end < len(text) and ok(text[end]):
        end += 1
    return end


def _take_number(text: str, prefix: str) -> tuple[int | None, str]:
    """Consume ``<prefix><digits>``. ``int()`` is applied even to an empty
    digit run so a bare prefix fails with Python's message, as Swift's does."""
    if not text.startswith(prefix):
        return None, text
    end = _span(text, 1, str.isdigit)
    return int(text[1:end]), text[end:]


def _take_ip(text: str) -> tuple[str | None, str]:
    """Consume a dotted IPv4-ish run or a bracketed IPv6 literal."""
    if text and text[0].isdigit():
        end = _span(text, 1, lambda c: c in IPV4_CHARS)
        return text[:end], text[end:]
    if text.startswith("["):
        end = _span(text, 1, lambda c: c != "]") + 1
        return text[:end].lstrip("[").rstrip("]"), text[end:]
    return None, text


def _take_port(text: str) -> tuple[int | None, str]:
    return _take_number(text, ":")


def _take_device_and_meta(text: str, match: dict[str, Any]) -> str:
    if text.startswith("/"):
        end = _span(text, 1, lambda c: c != "_")
        match["device"] = text[1:end]
        text = text[end:]
    if text.startswith("_"):
        match["meta"] = text[1:]
        text = ""
    return text


# --------------------------------------------------------------------------
# Search values: d<id>r<region>z<zone>-<ip>:<port>R<rip>:<rport>/<dev>_<meta>

SEARCH_VALUE_HELP = """\
The <search-value> can be of the form::

    d<device_id>r<region>z<zone>-<ip>:<port>R<r_ip>:<r_port>/
     <device_name>_<meta>

Where <r_ip> and <r_port> are replication ip and port.

Any part is optional, but you must include at least one part.

Examples::

    d74              Matches the device id 74
    r4               Matches devices in region 4
    z1               Matches devices in zone 1
    z1-1.2.3.4       Matches devices in zone 1 with the ip 1.2.3.4
    1.2.3.4          Matches devices in any zone with the ip 1.2.3.4
    z1:5678          Matches devices in zone 1 using port 5678
    :5678            Matches devices that use port 5678
    R5.6.7.8         Matches devices that use replication ip 5.6.7.8
    R:5678           Matches devices that use replication port 5678
    1.2.3.4R5.6.7.8  Matches devices that use ip 1.2.3.4 and replication ip
                     5.6.7.8
    /sdb1            Matches devices with the device name sdb1
    _shiny           Matches devices with shiny in the meta data
    _"snet: 5.6.7.8" Matches devices with snet: 5.6.7.8 in the meta data
    [::1]            Matches devices in any zone with the ip ::1
    z1-[::1]:5678    Matches devices in zone 1 with ip ::1 and port 5678

Most specific example::

    d74r4z1-1.2.3.4:5678/sdb1_"snet: 5.6.7.8"

Nerd explanation:

    All items require their single character prefix except the ip, in which
    case the - is optional unless the device id or zone is also included."""


def parse_search_value(value: str) -> dict[str, Any]:
    """Turn a search value into a dict of device fields to match."""
    match: dict[str, Any] = {}
    rest = value
    for key, prefix in (("id", "d"), ("region", "r"), ("zone", "z")):
        number, rest = _take_number(rest, prefix)
        if number is not None:
            match[key] = number
    if rest.startswith("-"):
        rest = rest[1:]
    ip, rest = _take_ip(rest)
    if ip is not None:
        match["ip"] = normalize_ip(ip)
    port, rest = _take_port(rest)
    if port is not None:
        match["port"] = port
    if rest.startswith("R"):
        rip, rest = _take_ip(rest[1:])
        if rip is not None:
            match["replication_ip"] = normalize_ip(rip)
        rport, rest = _take_port(rest)
        if rport is not None:
            match["replication_port"] = rport
    rest = _take_device_and_meta(rest, match)
    if rest:
        raise ValueError(f"Invalid <search-value>: {value!r}")
    return match


def parse_change_value(value: str) -> dict[str, Any]:
    """``set_info``'s change string: ``<ip>:<port>R<rip>:<rport>/<dev>_<meta>``,
    every part optional. Returns only the fields given; the caller rejects an
    empty change or leftover text (returned under the key ``""``)."""
    change: dict[str, Any] = {}
    rest = value
    for ip_key, port_key, prefix in (("ip", "port", ""), ("replication_ip", "replication_port", "R")):
        if prefix:
            if not rest.startswith(prefix):
                continue
            rest = rest[1:]
        ip, rest = _take_ip(rest)
        if ip:
            change[ip_key] = normalize_ip(ip)
        port, rest = _take_port(rest)
        if port is not None:
            change[port_key] = port
    rest = _take_device_and_meta(rest, change)
    if rest:
        change[""] = rest
    return change


# --------------------------------------------------------------------------
# Add values: [r<region>]z<zone>-<ip>:<port>[R<rip>:<rport>]/<dev>[_<meta>]


def _split_address(text: str) -> tuple[str, int, str]:
    """``<ip>:<port>`` up to the next ``R`` or ``/``; IPv6 in brackets."""
    if text.startswith("["):
        # Only the first bracket pair delimits the literal.
        text = text.replace("[", "", 1).replace("]", "", 1)
    end = _span(text, 0, lambda c: c not in "R/")
    address, rest = text[:end], text[end:]
    colon = address.rfind(":")
    if colon == -1:
        raise ValueError("Invalid port in add value")
    try:
        port = int(address[colon + 1 :])
    except ValueError:
        raise ValueError(f"Invalid port {address[colon:]} in add value") from None
    return normalize_ip(address[:colon]), port, rest


def parse_add_value(value: str) -> dict[str, Any]:
    """Parse one ``add`` device string. ``region``, ``replication_ip`` and
    ``replication_port`` are None when absent so the caller can default them
    (and warn about the region)."""
    region, rest = _take_number(value, "r")
    if not rest.startswith("z"):
        raise ValueError(f"Invalid add value: {value}")
    zone, rest = _take_number(rest, "z")
    if not rest.startswith("-"):
        raise ValueError(f"Invalid add value: {value}")
    ip, port, rest = _split_address(rest[1:])
    rip: str | None = None
    rport: int | None = None
    if rest.startswith("R"):
        rip, rport, rest = _split_address(rest[1:])
    if not rest.startswith("/"):
        raise ValueError(f"Invalid add value: {value}")
    end = _span(rest, 1, lambda c: c != "_")
    device = rest[1:end]
    if not valid_device_name(device):
        raise ValueError("Invalid device name")
    rest = rest[end:]
    meta = rest[1:] if rest.startswith("_") else ""
    return {
        "region": region,
        "zone": zone,
        "ip": ip,
        "port": port,
        "device": device,
        "replication_ip": rip,
        "replication_port": rport,
        "meta": meta,
    }


# --------------------------------------------------------------------------
# The long-option form shared by add/search/set_*/remove/list_parts


def _option_parser() -> optparse.OptionParser:
    p = optparse.OptionParser()
    p.add_option("-u", "--id", type="int", help="Device ID")
    p.add_option("-r", "--region", type="int", help="Region")
    p.add_option("-z", "--zone", type="int", help="Zone")
    p.add_option("-i", "--ip", type="string", help="IP address")
    p.add_option("-p", "--port", type="int", help="Port number")
    p.add_option("-j", "--replication-ip", type="string", help="Replication IP address")
    p.add_option("-q", "--replication-port", type="int", help="Replication port number")
    p.add_option("-d", "--device", type="string", help="Device name (e.g. md0, sdb1)")
    p.add_option("-w", "--weight", type="float", help="Device weight")
    p.add_option("-m", "--meta", type="string", default="", help="Extra device info")
    p.add_option("-I", "--change-ip", type="string", help="IP address for change")
    p.add_option("-P", "--change-port", type="int", help="Port number for change")
    p.add_option("-J", "--change-replication-ip", type="string", help="Replication IP for change")
    p.add_option("-Q", "--change-replication-port", type="int", help="Replication port for change")
    p.add_option("-D", "--change-device", type="string", help="Device name for change")
    p.add_option("-M", "--change-meta", type="string", default="", help="Extra info for change")
    p.add_option("-y", "--yes", default=False, action="store_true", help="Assume yes")
    return p


def parse_device_opts(argv: Sequence[str]) -> tuple[bool, optparse.Values, list[str]]:
    """Parse the shared options. The first element says whether any device
    option was given (the "new" long-option form); commands accept either
    that form or positional values, never both."""
    opts, args = _option_parser().parse_args(list(argv))
    # id, region, zone and weight may legitimately be 0.
    long_form = bool(
        opts.id is not None
        or opts.region is not None
        or opts.zone is not None
        or opts.ip
        or opts.port
        or opts.replication_ip
        or opts.replication_port
        or opts.device
        or opts.weight is not None
        or opts.meta
    )
    return long_form, opts, args


SEARCH_KEYS = (
    "id",
    "region",
    "zone",
    "ip",
    "port",
    "replication_ip",
    "replication_port",
    "device",
    "weight",
    "meta",
)


def search_values_from_opts(opts: optparse.Values) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in SEARCH_KEYS:
        value = getattr(opts, key, None)
        if value and key in ("ip", "replication_ip"):
            value = normalize_address(value)
        # Falsy options are kept as None-ish entries: search ignores them.
        values[key] = value
    return values


def change_values_from_opts(opts: optparse.Values) -> dict[str, Any]:
    change: dict[str, Any] = {}
    for key in ("ip", "port", "replication_ip", "replication_port", "device", "meta"):
        value = getattr(opts, "change_" + key, None)
        if value:
            if key in ("ip", "replication_ip"):
                value = normalize_address(value)
            change[key] = value
    return change


def dev_from_opts(opts: optparse.Values) -> dict[str, Any]:
    """A complete device dict from the long-option ``add`` form."""
    for attr, short, long in (
        ("region", "-r", "--region"),
        ("zone", "-z", "--zone"),
        ("ip", "-i", "--ip"),
        ("port", "-p", "--port"),
        ("device", "-d", "--device"),
        ("weight", "-w", "--weight"),
    ):
        if getattr(opts, attr, None) is None:
            raise ValueError(f"Required argument {short}/{long} not specified.")
    ip = normalize_address(opts.ip)
    rip = normalize_address(opts.replication_ip or opts.ip)
    if not valid_device_name(opts.device):
        raise ValueError("Invalid device name")
    return {
        "region": opts.region,
        "zone": opts.zone,
        "ip": ip,
        "port": opts.port,
        "device": opts.device,
        "meta": opts.meta,
        "replication_ip": rip,
        "replication_port": opts.replication_port or opts.port,
        "weight": opts.weight,
    }


# --------------------------------------------------------------------------
# File names


def builder_and_ring_names(first_arg: str) -> tuple[str, str]:
    """``object.builder`` <-> ``object.ring.gz``; any other name gets
    ``.ring.gz`` appended for the ring and is used as is for the builder."""
    if first_arg.endswith(".ring.gz"):
        return first_arg[: -len(".ring.gz")] + ".builder", first_arg
    if first_arg.endswith(".builder"):
        return first_arg, first_arg[: -len(".builder")] + ".ring.gz"
    return first_arg, first_arg + ".ring.gz"


def normalized_dev_address(value: str) -> str:
    """Device addresses as stored may be host names or unnormalized IPv6;
    compare them in normalized form, treating invalid ones as ''."""
    try:
        return normalize_address(value)
    except ValueError:
        return ""


def search_devs(devs: Sequence[dict[str, Any] | None], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Devices matching every given (truthy-or-zero) field; ``meta`` matches
    as a substring. Used when the builder engine lacks ``search_devs``."""
    found = []
    for dev in devs:
        if not dev:
            continue
        ok = True
        for key in SEARCH_KEYS:
            want = values.get(key)
            if key not in values or want is None:
                continue
            if key == "meta":
                ok = want in dev.get("meta", "")
            elif key in ("ip", "replication_ip"):
                ok = normalized_dev_address(dev.get(key, "")) == want
            else:
                ok = dev.get(key) == want
            if not ok:
                break
        if ok:
            found.append(dev)
    return found
