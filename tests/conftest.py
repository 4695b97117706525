"""Make the project's modules importable the way Ansible imports them on a target:
module_utils/<name>.py as ansible.module_utils.<name>, library/<name>.py as a plain module."""
import os
import sys

import ansible.module_utils

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ansible.module_utils.__path__.append(os.path.join(TOP, 'module_utils'))
sys.path.insert(0, os.path.join(TOP, 'library'))
