#!/usr/bin/env python3
"""Validate the files playbooks/report.yml wrote: <base>.json against the schema, <base>.xml with
xml.etree (one testcase per host), <base>.html with html.parser (one table row per host, tags nest).
When Debian's chromium is installed, the page is also rendered headless to <base>.png (it must be a real
image). Prints {"hosts": {name: record}} for the scenario's own assertions; exits non-zero on any problem.

usage: check_report.py SCHEMA BASE"""
import html.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import jsonschema


class Rows(html.parser.HTMLParser):
    VOID = {'meta', 'br', 'link', 'img', 'input', 'hr'}

    def __init__(self):
        html.parser.HTMLParser.__init__(self)
        self.stack, self.rows, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == 'tr' and 'tbody' in self.stack:
            self.rows.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append('unbalanced </%s>' % tag)


def main(schema_path, base):
    report = json.load(open(base + '.json'))
    jsonschema.Draft202012Validator(json.load(open(schema_path))).validate(report)
    hosts = [h['host'] for h in report['hosts']]

    suite = ET.parse(base + '.xml').getroot().find('testsuite')
    cases = suite.findall('testcase')
    assert [c.get('name').split(':')[0] for c in cases] == hosts, 'JUnit testcases differ from the hosts'
    failed = [c.get('name').split(':')[0] for c in cases if c.find('failure') is not None]
    assert failed == [h['host'] for h in report['hosts'] if h['verdict'] == 'fail'], failed
    assert int(suite.get('failures')) == report['totals']['fail']

    page = Rows()
    page.feed(open(base + '.html').read())
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert [r.get('data-host') for r in page.rows] == hosts, 'HTML rows differ from the hosts'
    assert [r.get('class') for r in page.rows] == ['v-' + h['verdict'] for h in report['hosts']]

    browser = shutil.which('chromium')
    if browser:
        png = os.path.abspath(base + '.png')
        subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                        '--disable-component-update', '--disable-sync', '--no-first-run',
                        '--user-data-dir=' + tempfile.mkdtemp(), '--screenshot=' + png, '--window-size=1280,800',
                        'file://' + os.path.abspath(base + '.html')],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True)
        with open(png, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', 'chromium wrote no PNG'
        assert os.path.getsize(png) > 10000, 'the rendered page is (nearly) empty'

    print(json.dumps({'hosts': dict((h['host'], h) for h in report['hosts'])}))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
