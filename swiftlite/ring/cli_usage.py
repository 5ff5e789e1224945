"""Usage texts of ``swiftlite-ring-builder``, one per command.

The first line of each is the command's synopsis in the same form as
``swift-ring-builder``'s (only the program name differs); they are printed,
as Swift prints its own, when a command is called with too few arguments.
"""

from __future__ import annotations

PROG = "swiftlite-ring-builder"

_DEVICE_OPTS = """\
    --region <region> --zone <zone> --ip <ip or hostname> --port <port>
    --replication-ip <r_ip or r_hostname> --replication-port <r_port>
    --device <device_name> --meta <meta> --weight <weight>"""

USAGE: dict[str, str] = {
    "default": f"""\
{PROG} <builder_file>
    Shows information about the ring and the devices within. Output
    includes a table that describes the report parameters (id, region,
    port, flags, etc).
    flags: possible values are 'DEL' and ''
        DEL - indicates that the device is marked for removal from
              ring and will be removed in next rebalance.""",
    "create": f"""\
{PROG} <builder_file> create <part_power> <replicas>
                                         <min_part_hours>
    Creates <builder_file> with 2^<part_power> partitions and <replicas>.
    <min_part_hours> is the number of hours during which a partition may not
    be moved again after it has moved.""",
    "add": f"""\
{PROG} <builder_file> add
    [r<region>]z<zone>-<ip>:<port>[R<r_ip>:<r_port>]/<device_name>_<meta>
     <weight>
    [[r<region>]z<zone>-<ip>:<port>[R<r_ip>:<r_port>]/<device_name>_<meta>
     <weight>] ...

    Where <r_ip> and <r_port> are replication ip and port.

or

{PROG} <builder_file> add
    --region <region> --zone <zone> --ip <ip or hostname> --port <port>
    [--replication-ip <r_ip or r_hostname>] [--replication-port <r_port>]
    --device <device_name> --weight <weight>
    [--meta <meta>]

    Adds devices to the builder. Nothing is assigned to them until the next
    'rebalance', so several changes can be made and rebalanced at once.""",
    "search": f"""\
{PROG} <builder_file> search <search-value>

or

{PROG} <builder_file> search
{_DEVICE_OPTS}

    Where <r_ip>, <r_hostname> and <r_port> are replication ip, hostname
    and port.
    Any of the options are optional in both cases.

    Shows information about matching devices.""",
    "list_parts": f"""\
{PROG} <builder_file> list_parts <search-value> [<search-value>] ..

or

{PROG} <builder_file> list_parts
{_DEVICE_OPTS}

    Where <r_ip>, <r_hostname> and <r_port> are replication ip, hostname
    and port.
    Any of the options are optional in both cases.

    Lists the partitions assigned to any of the matching devices: partition
    number, then how many of the matching devices hold it, most first.""",
    "set_weight": f"""\
{PROG} <builder_file> set_weight <search-value> <new_weight>
    [<search-value> <new_weight>] ...
    [--yes]

or

{PROG} <builder_file> set_weight
{_DEVICE_OPTS} <new_weight>
    [--yes]

    Where <r_ip>, <r_hostname> and <r_port> are replication ip, hostname
    and port. <weight> and <new_weight> are the search weight and new
    weight values respectively.
    Any of the options are optional in both cases.

    Changes the devices' weights; takes effect at the next 'rebalance'.

    Option --yes assume a yes response to all questions.""",
    "set_region": f"""\
{PROG} <builder_file> set_region <search-value> <region>
    [<search-value> <region] ...

or

{PROG} <builder_file> set_region
    --region <region> --zone <zone> --ip <ip or hostname> --port <port>
    --replication-ip <r_ip or r_hostname> --replication-port <r_port>
    --device <device_name> --meta <meta> <new region> [--yes]

    Changes the devices' regions; takes effect at the next 'rebalance'.

    Option --yes assume a yes response to all questions.""",
    "set_zone": f"""\
{PROG} <builder_file> set_zone <search-value> <zone>
    [<search-value> <zone] ...

or

{PROG} <builder_file> set_zone
    --region <region> --zone <zone> --ip <ip or hostname> --port <port>
    --replication-ip <r_ip or r_hostname> --replication-port <r_port>
    --device <device_name> --meta <meta> <new zone> [--yes]

    Changes the devices' zones; takes effect at the next 'rebalance'.

    Option --yes assume a yes response to all questions.""",
    "set_info": f"""\
{PROG} <builder_file> set_info
    <search-value> <ip>:<port>[R<r_ip>:<r_port>]/<device_name>_<meta>
    [<search-value> <ip>:<port>[R<r_ip>:<r_port>]/<device_name>_<meta>] ...
    [--yes]

or

{PROG} <builder_file> set_info
    --ip <ip or hostname> --port <port>
    --replication-ip <r_ip or r_hostname> --replication-port <r_port>
    --device <device_name> --meta <meta>
    --change-ip <ip or hostname> --change-port <port>
    --change-replication-ip <r_ip or r_hostname>
    --change-replication-port <r_port>
    --change-device <device_name>
    --change-meta <meta>
    [--yes]

    Changes the matched devices' addresses, names or meta. Placement does not
    depend on these, so 'write_ring' publishes them without a rebalance. Give
    only the parts to change, e.g. set_info d74 _"snet: 5.6.7.8".

    Option --yes assume a yes response to all questions.""",
    "remove": f"""\
{PROG} <builder_file> remove <search-value> [search-value ...]
    [--yes]

or

{PROG} <builder_file> remove
{_DEVICE_OPTS}
    [--yes]

    Where <r_ip>, <r_hostname> and <r_port> are replication ip, hostname
    and port.
    Any of the options are optional in both cases.

    Marks the devices for removal; their partitions move away at the next
    'rebalance'. To retire a healthy device, prefer setting its weight to 0,
    letting it drain, then removing it.

    Option --yes assume a yes response to all questions.""",
    "rebalance": f"""\
{PROG} <builder_file> rebalance [options]
    Reassigns partitions that have not moved recently, to even out balance
    and dispersion, then writes the ring and the builder.""",
    "dispersion": rf"""\
{PROG} <builder_file> dispersion <search_filter> [options]

    Output report on dispersion.

    --recalculate option will rebuild cached dispersion info and save builder
    --verbose option will display dispersion graph broken down by tier

    The optional search_filter is a regex selecting the tiers shown, e.g.
    "r\d+z\d+$" for zones or ".*\-[^/]*$" for servers.

    Columns: Tier, Parts (parts with a replica in the tier), % (parts with
    more replicas than Max in the tier), Max (replicas a part should have
    at most in the tier), then the number of parts having 0..N replicas there.""",
    "validate": f"""\
{PROG} <builder_file> validate
    Just runs the validation routines on the ring.""",
    "write_ring": f"""\
{PROG} <builder_file> write_ring
    Rewrites the ring file from the builder without rebalancing (for example
    after 'set_info').""",
    "write_builder": f"""\
{PROG} <ring_file> write_builder [min_part_hours]
    Recreate a builder from a ring file (lossy) if you lost your builder
    backups. [min_part_hours] is not stored in the ring (default 24); it can
    be changed later with set_min_part_hours.""",
    "pretend_min_part_hours_passed": f"""\
{PROG} <builder_file> pretend_min_part_hours_passed
    Resets the clock on the last time a rebalance happened, thus
    circumventing the min_part_hours check. USE WITH EXTREME CAUTION: pushing
    rings rebalanced before replication caught up can make data unavailable.""",
    "set_min_part_hours": f"""\
{PROG} <builder_file> set_min_part_hours <hours>
    Changes the <min_part_hours> to the given <hours>. Set it to the time a
    full replication cycle takes.""",
    "set_replicas": f"""\
{PROG} <builder_file> set_replicas <replicas>
    Changes the replica count to the given <replicas>, which may be
    fractional. A rebalance is needed to make the change take effect.""",
    "set_overload": f"""\
{PROG} <builder_file> set_overload <overload>[%]
    Changes the overload factor to the given <overload>.

    A rebalance is needed to make the change take effect.""",
    "version": f"""\
{PROG} <ring_file> version
    Prints the ring file's serialization version, id size and build version.""",
}


def full_help(commands: list[str], search_help: str) -> str:
    """What the program prints when run without arguments."""
    from textwrap import wrap

    out = [f"{PROG} 1.3\n", USAGE["default"], ""]
    for cmd in commands:
        out += [USAGE[cmd], ""]
    out += [search_help, ""]
    out += wrap(" ".join(commands), 79, initial_indent="Quick list: ", subsequent_indent="            ")
    out.append(
        "Exit codes: 0 = operation successful\n"
        "            1 = operation completed with warnings\n"
        "            2 = error"
    )
    return "\n".join(out)
