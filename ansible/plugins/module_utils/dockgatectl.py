# -*- coding: utf-8 -*-
# Copyright: dockgate developers
# GNU General Public License v2.0 or later (see COPYING or https://www.gnu.org/licenses/gpl-2.0.txt)

"""dockgatectl --json on the managed host: the modules' one way to dockgated's D-Bus API.

dockgatectl already speaks to the system bus and polkit, and says in one line on standard
error what dockgated or polkit answered; the modules need no D-Bus library on the host.
"""

from __future__ import annotations

import ipaddress
import json


def dockgatectl(module, *arguments):
    """Runs dockgatectl --json ARGUMENTS; its JSON, None when it printed nothing.

    On failure the module fails with dockgatectl's line (e.g. "NotAuthorized: ..."), as
    dockgated or polkit answered it.
    """
    executable = module.params.get('executable') or module.get_bin_path('dockgatectl', required=True)
    command = [executable, '--json'] + list(arguments)
    rc, stdout, stderr = module.run_command(command, environ_update={'LC_ALL': 'C'})
    if rc != 0:
        reason = stderr.strip() or stdout.strip() or 'exit status %d' % rc
        if reason.startswith('dockgatectl: '):
            reason = reason[len('dockgatectl: '):]
        module.fail_json(msg=reason, rc=rc, stdout=stdout, stderr=stderr, cmd=command)
    if not stdout.strip():
        return None
    try:
        return json.loads(stdout)
    except ValueError as error:
        module.fail_json(msg='dockgatectl printed no JSON: %s' % error, stdout=stdout, cmd=command)


def normalize_port(port):
    """'8080/TCP' and '8080-8080/tcp' are dockgated's '8080/tcp'."""
    port = port.strip().lower()
    numbers, slash, protocol = port.partition('/')
    first, dash, last = numbers.partition('-')
    if dash and first.strip() == last.strip():
        numbers = first.strip()
    return numbers.replace(' ', '') + slash + protocol.strip()


def normalize_source(source):
    """A source as dockgated spells it: 'any', an address (a /32 or /128 is the address), a
    network with its prefix, or a range 'a-b'. Anything else is left as written."""
    source = source.strip()
    if source.lower() == 'any':
        return 'any'
    try:
        if '-' in source:
            first, last = source.split('-', 1)
            return '%s-%s' % (ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip()))
        interface = ipaddress.ip_interface(source)
    except ValueError:
        return source
    if interface.network.prefixlen == interface.network.max_prefixlen:
        return str(interface.ip)
    return str(interface)


def normalize_sources(sources):
    return sorted(set(normalize_source(source) for source in sources or []))
