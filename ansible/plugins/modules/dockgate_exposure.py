#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dockgate developers
# GNU General Public License v2.0 or later (see COPYING or https://www.gnu.org/licenses/gpl-2.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: dockgate_exposure
short_description: Let sources reach a port Docker publishes, at run time, through dockgate
description:
  - Makes or removes a runtime exposure of dockgate, the exposure policy for Docker-published
    ports on firewalld hosts, through dockgated's D-Bus API (C(dockgatectl --json) on the managed
    host; no Python library is needed there).
  - An exposure is identified by its O(port), its O(sources) (in any order, spelled in any way
    dockgated reads the same, e.g. C(192.0.2.7) and C(192.0.2.7/32)) and its O(container). With
    O(state=present), a runtime exposure that matches is kept as it is (its TTL and comment are not
    changed); otherwise one is made.
  - With O(state=absent), every runtime exposure that matches is removed; without O(sources), every
    runtime exposure of O(port) (and of O(container), when given).
  - Exposures of the config file are read-only at run time and never matched here; the role
    C(dockgate.dockgate.dockgate) writes them (C(dockgate_expose)).
  - "dockgated asks polkit whether the caller may (action C(org.dockgate.Dockgate1.expose); root
    always may; removing another user's exposure needs C(org.dockgate.Dockgate1.admin)). A refusal
    fails the task with dockgated's answer, e.g. C(NotAuthorized: ...)."
version_added: 0.1.0
author: dockgate developers (@dockgate)
options:
  port:
    description:
      - The published host port (or range) and protocol clients connect to, e.g. C(8080/tcp) or
        C(8000-8010/udp).
    type: str
    required: true
  sources:
    description:
      - Who may open new connections to O(port) from outside, each an IPv4 or IPv6 address, a CIDR,
        a range C(a-b), or C(any).
      - Required with O(state=present).
    type: list
    elements: str
  ttl:
    description:
      - How long a new exposure lasts, e.g. C(90s), C(15m), C(1h), C(2d) (a plain number is
        seconds). Until removed when not given. The kernel ends it on time, whether dockgated runs
        or not.
      - Not part of what identifies an exposure; an existing one keeps its own end.
    type: str
  container:
    description:
      - Only while this container publishes O(port).
    type: str
  comment:
    description:
      - A note kept with a new exposure, shown by C(dockgatectl list).
    type: str
  state:
    description:
      - Whether the exposure should exist.
    type: str
    choices: [present, absent]
    default: present
  executable:
    description:
      - The path of C(dockgatectl) on the managed host; looked up in E(PATH) when not given.
    type: path
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
requirements:
  - dockgate (C(dockgatectl) and a running C(dockgated)) on the managed host.
seealso:
  - module: dockgate.dockgate.dockgate_info
'''

EXAMPLES = r'''
- name: Let the office reach the staging web server for a day
  dockgate.dockgate.dockgate_exposure:
    port: 8443/tcp
    sources:
      - 198.51.100.0/24
    ttl: 1d
    comment: staging review, ticket 1234

- name: Let the monitoring host reach the exporter while the container runs
  dockgate.dockgate.dockgate_exposure:
    port: 9100/tcp
    sources: [192.0.2.10, "2001:db8::10"]
    container: node-exporter

- name: Take it away again
  dockgate.dockgate.dockgate_exposure:
    port: 8443/tcp
    sources:
      - 198.51.100.0/24
    state: absent
'''

RETURN = r'''
id:
  description: The id of the exposure that was made or found (C(runtime-N)).
  returned: when O(state=present) and not in check mode
  type: str
  sample: runtime-3
exposure:
  description: The exposure as C(dockgatectl list --json) gives it.
  returned: when O(state=present) and not in check mode
  type: dict
  sample:
    id: runtime-3
    port: 8443/tcp
    protocol: tcp
    sources: [198.51.100.0/24]
    container: ""
    origin: runtime
    expires_at: 1798761600
    comment: staging review, ticket 1234
    owner_uid: 0
    owner: root
    active: true
removed:
  description: The ids of the exposures removed (or that would be, in check mode).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [runtime-3]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockgate.dockgate.plugins.module_utils.dockgatectl import (
    dockgatectl,
    normalize_port,
    normalize_sources,
)


def matching(module, exposures):
    """The runtime exposures that are this task's exposure."""
    port = normalize_port(module.params['port'])
    sources = module.params['sources']
    container = module.params['container']
    if container is None and module.params['state'] == 'present':
        # Present without a container is an exposure bound to none.
        container = ''
    found = []
    for exposure in exposures:
        if exposure.get('origin') != 'runtime':
            continue
        if normalize_port(exposure.get('port', '')) != port:
            continue
        if container is not None and (exposure.get('container') or '') != container:
            continue
        if sources is not None and normalize_sources(exposure.get('sources')) != normalize_sources(sources):
            continue
        found.append(exposure)
    return found


def described(exposures):
    """What --diff shows: the matching exposures by id."""
    return dict((exposure['id'], exposure) for exposure in exposures)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            port=dict(type='str', required=True),
            sources=dict(type='list', elements='str'),
            ttl=dict(type='str'),
            container=dict(type='str'),
            comment=dict(type='str'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            executable=dict(type='path'),
        ),
        required_if=[('state', 'present', ['sources'])],
        supports_check_mode=True,
    )
    params = module.params
    found = matching(module, dockgatectl(module, 'list') or [])

    if params['state'] == 'absent':
        removed = [exposure['id'] for exposure in found]
        if removed and not module.check_mode:
            for exposure_id in removed:
                dockgatectl(module, 'unexpose', exposure_id)
        module.exit_json(changed=bool(removed), removed=removed,
                         diff=dict(before=described(found), after={}))

    if found:
        module.exit_json(changed=False, id=found[0]['id'], exposure=found[0])

    wanted = dict(port=normalize_port(params['port']), sources=params['sources'],
                  container=params['container'] or '', ttl=params['ttl'] or '',
                  comment=params['comment'] or '')
    diff = dict(before={}, after={'(new)': wanted})
    if module.check_mode:
        module.exit_json(changed=True, diff=diff)

    arguments = ['expose', params['port'], '--from'] + list(params['sources'])
    if params['ttl']:
        ttl = params['ttl'].strip()
        arguments += ['--for', ttl + 's' if ttl.isdigit() else ttl]
    if params['container']:
        arguments += ['--container', params['container']]
    if params['comment']:
        arguments += ['--comment', params['comment']]
    exposure_id = (dockgatectl(module, *arguments) or {}).get('id')
    made = [exposure for exposure in dockgatectl(module, 'list') or [] if exposure.get('id') == exposure_id]
    exposure = made[0] if made else dict(id=exposure_id)
    module.exit_json(changed=True, id=exposure_id, exposure=exposure,
                     diff=dict(before={}, after=described([exposure])))


if __name__ == '__main__':
    main()
