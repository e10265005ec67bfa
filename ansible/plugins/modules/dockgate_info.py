#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dockgate developers
# GNU General Public License v2.0 or later (see COPYING or https://www.gnu.org/licenses/gpl-2.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: dockgate_info
short_description: Read dockgate's state on a host, its published ports and exposures
description:
  - Returns what dockgated answers on the managed host, through C(dockgatectl --json) (no Python
    library is needed there), for a play to decide on or to report across a fleet.
  - Read-only; needs polkit's action C(org.dockgate.Dockgate1.read) (root always has it).
version_added: 0.1.0
author: dockgate developers (@dockgate)
options:
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
    support: N/A
    details: Changes nothing.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
requirements:
  - dockgate (C(dockgatectl) and a running C(dockgated)) on the managed host.
seealso:
  - module: dockgate.dockgate.dockgate_exposure
'''

EXAMPLES = r'''
- name: Read dockgate's state
  dockgate.dockgate.dockgate_info:
  register: dockgate

- name: Fail where a published port is open to everyone
  ansible.builtin.assert:
    that: dockgate.ports | selectattr('state', 'equalto', 'open') | list | length == 0
    fail_msg: "open to everyone: {{ dockgate.ports | selectattr('state', 'equalto', 'open') | map(attribute='container') | list }}"
'''

RETURN = r'''
status:
  description: C(dockgatectl status --json)
  returned: success
  type: dict
  sample:
    version: 0.1.0
    firewalld_connected: true
    docker_connected: true
    default: deny
    verdict: drop
    rule_count: 12
    last_reconcile: 1798761600000000
    exposures: 2
    published_ports: 3
    permissions: {read: "yes", expose: "yes", admin: "yes"}
ports:
  description: Every port Docker publishes and who may reach it (C(dockgatectl ports --json)).
  returned: success
  type: list
  elements: dict
  sample:
    - container: web
      host_ip: 0.0.0.0
      host_port: 443
      protocol: tcp
      container_port: 8443
      state: exposed
      sources: [any]
      loopback_only: false
      judged_by: dockgate
exposures:
  description: Every exposure, of the config and made at run time (C(dockgatectl list --json)).
  returned: success
  type: list
  elements: dict
  sample:
    - id: config-1
      port: 443/tcp
      protocol: tcp
      sources: [any]
      container: ""
      origin: config
      expires_at: 0
      comment: public web
      owner_uid: 0
      owner: config
      active: true
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockgate.dockgate.plugins.module_utils.dockgatectl import dockgatectl


def main():
    module = AnsibleModule(
        argument_spec=dict(executable=dict(type='path')),
        supports_check_mode=True,
    )
    module.exit_json(
        changed=False,
        status=dockgatectl(module, 'status'),
        ports=dockgatectl(module, 'ports') or [],
        exposures=dockgatectl(module, 'list') or [],
    )


if __name__ == '__main__':
    main()
