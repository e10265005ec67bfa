"""Stands in for the get-pip.py that ansible-test downloads to put pip into the empty
virtualenv of a sanity test: that file comes from a host this machine does not reach. It
installs what ansible-test asks for (pip==VERSION) into the interpreter that runs it with the
pip of dockgate's ansible venv, from PyPI. Used only by tests/install-deps, which places it
where ansible-test looks for its cached copy; tests/run then finds every virtualenv made.
"""

import os
import subprocess
import sys

# ansible-test's options that get-pip.py understands and pip install does not.
arguments = [argument for argument in sys.argv[1:] if argument not in ('--no-setuptools', '--no-wheel')]
# Placed as $DOCKGATE_ANSIBLE/home/.ansible/test/cache/get_pip_VERSION.py (ansible-test runs it
# with a clean environment, so its place says where the venv is).
ansible = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
outer = os.path.join(ansible, 'venv', 'bin', 'python')
subprocess.check_call([outer, '-m', 'pip', '--python', sys.executable, 'install', '--quiet'] + arguments)
