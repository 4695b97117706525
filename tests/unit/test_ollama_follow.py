# -*- coding: utf-8 -*-
"""Unit tests for module_utils/ollama_follow.py: following a growing log (files, commands, journalctl and
its poll fallback, settle, saved files judged at once) and open_current_log."""
import os
import sys
import threading
import time

import pytest

from ansible.module_utils import ollama_follow as F
from ansible.module_utils import ollama_log as L
from ansible.module_utils import ollama_log_record as R
from ansible.module_utils import vgpu_systemctl as SC
from test_ollama_log import (CONFIG_12, CONFIG_30, CPU_12, CTX_30, DISCOVERING_30, IC_12, IC_30_CUDA, IC_30_VULKAN,
                             LISTEN_12, LISTEN_30, ZERO_VRAM, lines, stamped)


# ------------------------------------------------------------------ following

def _writer(path, chunks, delay):
    def run():
        time.sleep(delay)
        with open(path, 'a') as f:
            for chunk in chunks:
                f.write(chunk)
                f.flush()
        written.append(time.monotonic())
    written = []
    thread = threading.Thread(target=run)
    thread.start()
    return thread, written


def test_follow_file_returns_soon_after_the_compute_line(tmp_path):
    path = str(tmp_path / 'ollama.log')
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, 'time=2025-11-25T10:00:00.106Z level=INFO source=runner.go:80 '
                                            'msg="discovering available GPUs..."'))
    thread, written = _writer(path, [IC_12 + '\n'], 0.5)
    source = F.FileSource(path)
    result, waited, reason = F.follow_log(source, 10)
    done = time.monotonic()
    thread.join()
    source.close()
    assert reason == 'verdict' and result['mode'] == 'gpu'
    assert done - written[0] < 1.0
    assert 0.4 < waited < 1.6


def test_follow_file_without_newline_at_the_end_and_timeout_zero(tmp_path):
    path = tmp_path / 'saved.log'
    path.write_text(LISTEN_12 + '\n' + CPU_12)
    result, waited, reason = F.follow_log(F.FileSource(str(path)), 0)
    assert result['mode'] == 'cpu' and waited < 0.5


def test_follow_file_unknown_until_timeout(tmp_path):
    path = tmp_path / 'saved.log'
    path.write_text(lines(CONFIG_12, LISTEN_12))
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(str(path)), 0.6)
    assert reason == 'timeout' and result['mode'] == 'unknown'
    assert 0.55 < time.monotonic() - began < 1.5


def test_follow_waits_for_a_missing_file(tmp_path):
    path = str(tmp_path / 'later.log')
    thread, written = _writer(path, [lines(LISTEN_12, IC_12, ZERO_VRAM.replace('"0 B"', '"79.6 GiB"'))], 0.3)
    result, waited, reason = F.follow_log(F.FileSource(path), 5)
    thread.join()
    assert reason == 'verdict' and result['mode'] == 'gpu' and result['verdict_closed']


def test_follow_restarts_the_parser_on_truncation(tmp_path):
    path = str(tmp_path / 'trunc.log')
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, CPU_12 + ' padding=' + 'x' * 200))
    source = F.FileSource(path)
    parser_text, reset = source.read(0)
    assert 'library=cpu' in parser_text and not reset
    with open(path, 'w') as f:          # StandardError=truncate: on the next start
        f.write(lines(LISTEN_12, IC_12))
    result, waited, reason = F.follow_log(source, 3)
    assert result['mode'] == 'gpu' and result['starts'] == 1


def test_follow_accept_start_skips_the_previous_process(tmp_path):
    path = str(tmp_path / 'stderr.log')
    old = R.log_time_to_epoch('2025-11-25T10:00:00.101Z')
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, CPU_12, ZERO_VRAM))
    new_config = CONFIG_12.replace('10:00:00.101Z', '10:05:00.000Z')
    thread, written = _writer(path, [lines(new_config, LISTEN_12, IC_12)], 0.4)
    result, waited, reason = F.follow_log(F.FileSource(path), 5,
                                          accept_start=lambda r: (r['start_epoch'] or 0) > old + 60)
    thread.join()
    assert result['mode'] == 'gpu' and result['starts'] == 2


def test_follow_accept_start_never_satisfied_reports_stale(tmp_path):
    path = tmp_path / 'stderr.log'
    path.write_text(lines(CONFIG_12, LISTEN_12, CPU_12))
    result, waited, reason = F.follow_log(F.FileSource(str(path)), 0.3, accept_start=lambda r: False)
    assert reason == 'timeout' and result['mode'] == 'unknown' and result['stale_start']


def test_follow_big_file_starts_near_the_last_start(tmp_path):
    path = str(tmp_path / 'big.log')
    filler = 'time=2025-11-25T09:00:00.000Z level=INFO source=x.go:1 msg="request" n=%s\n' % ('y' * 150)
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, IC_12))
        f.write(filler * (F.TAIL_SCAN_MIN // len(filler) + 100))
        f.write(lines(CONFIG_12, LISTEN_12, CPU_12))
    with open(path, 'rb') as fh:
        offset = F.last_start_offset(fh, os.path.getsize(path))
    assert offset > F.TAIL_SCAN_MIN - 100 * 1024
    result, waited, reason = F.follow_log(F.FileSource(path), 0)
    assert result['mode'] == 'cpu' and result['starts'] == 1


def test_follow_multi_gpu_waits_for_the_complete_device_list(tmp_path):
    path = str(tmp_path / 'multi.log')
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, stamped(IC_12)))
    thread, written = _writer(path, [stamped(IC_12.replace('GPU-3f6e', 'GPU-0000')) + '\n'], 0.1)
    result, waited, reason = F.follow_log(F.FileSource(path), 5)
    thread.join()
    assert len(result['devices']) == 2


# ------------------------------------------------------------------ settle: the quiet time already passed

def _follow_saved(tmp_path, *records):
    path = tmp_path / 'ollama.log'
    path.write_text(lines(*records))
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(str(path)), 10)
    return result, time.monotonic() - began, reason


def test_settle_a_compute_line_older_than_settle_needs_no_wait(tmp_path):
    result, took, reason = _follow_saved(tmp_path, CONFIG_12, LISTEN_12, IC_12)
    assert reason == 'verdict' and result['mode'] == 'gpu' and not result['verdict_closed']
    assert took < 0.2


def test_settle_a_fresh_compute_line_still_waits(tmp_path):
    result, took, reason = _follow_saved(tmp_path, CONFIG_12, LISTEN_12, stamped(IC_12))
    assert reason == 'verdict' and result['mode'] == 'gpu'
    assert 0.25 < took < 1.0


def test_settle_counts_only_the_part_that_passed(tmp_path):
    result, took, reason = _follow_saved(tmp_path, CONFIG_12, LISTEN_12, stamped(IC_12, age=0.15))
    assert reason == 'verdict' and result['mode'] == 'gpu'
    assert 0.05 < took < 0.28


def test_settle_without_a_stamp_or_with_a_future_one_waits_as_before(tmp_path):
    bare = IC_12[IC_12.index('level='):]
    result, took, reason = _follow_saved(tmp_path, LISTEN_12, bare)
    assert reason == 'verdict' and result['mode'] == 'gpu' and 0.25 < took < 1.0
    result, took, reason = _follow_saved(tmp_path, LISTEN_12, stamped(IC_12, age=-30))
    assert reason == 'verdict' and result['mode'] == 'gpu' and 0.25 < took < 1.0


def test_settle_a_pipe_gets_one_quiet_poll_before_an_old_verdict(tmp_path):
    # journalctl may flush a multi-GPU list in two pieces: one empty poll proves the pipe is quiet
    path = tmp_path / 'journal.txt'
    path.write_text(lines(CONFIG_12, LISTEN_12, IC_12))
    source = F.CommandSource(['sh', '-c', 'cat "$0"; exec sleep 60', str(path)])
    try:
        result, waited, reason = F.follow_log(source, 10)
    finally:
        source.close()
    assert reason == 'verdict' and result['mode'] == 'gpu'
    assert 0.04 < waited < 0.2


FAKE_JOURNALCTL = r'''
import sys, time
lines = sys.argv[1].split("\n")
for line in lines[:-1]:
    sys.stdout.write(line + "\n")
sys.stdout.flush()
time.sleep(float(sys.argv[2]))
sys.stdout.write(lines[-1] + "\n")
sys.stdout.flush()
time.sleep(60)
'''


def test_follow_command_source_like_journalctl_f():
    text = '\n'.join([CONFIG_12, LISTEN_12, IC_12])
    source = F.CommandSource([sys.executable, '-c', FAKE_JOURNALCTL, text, '0.5'])
    began = time.monotonic()
    try:
        result, waited, reason = F.follow_log(source, 10)
    finally:
        source.close()
    assert reason == 'verdict' and result['mode'] == 'gpu'
    # the compute line is written 0.5 s in; the verdict must come within 1 s of it
    assert time.monotonic() - began < 1.5
    assert source.proc.poll() is not None        # the follower was stopped


def test_follow_command_source_that_exits():
    source = F.CommandSource([sys.executable, '-c', 'import sys; sys.stderr.write("No journal files were found.\\n")'])
    result, waited, reason = F.follow_log(source, 5)
    err = source.close()
    assert reason == 'ended' and result['mode'] == 'unknown' and waited < 2
    assert 'No journal files' in err


# journalctl without an inotify instance: warns and exits on --follow; prints the log file otherwise
FAKE_JOURNALCTL_NO_INOTIFY = r'''
import sys
if "--follow" in sys.argv:
    sys.stderr.write("Insufficient watch descriptors available. Reverting to -n.\\n")
sys.stdout.write(open(sys.argv[1]).read())
'''


def test_journal_source_polls_when_journalctl_cannot_follow(tmp_path):
    path = str(tmp_path / 'journal.txt')
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12))
    thread, written = _writer(path, [stamped(IC_12) + '\n'], 0.5)
    source = F.JournalSource([sys.executable, '-c', FAKE_JOURNALCTL_NO_INOTIFY, path, '--follow', '--no-tail'])
    assert source.poll_argv == [sys.executable, '-c', FAKE_JOURNALCTL_NO_INOTIFY, path, '--no-tail']
    try:
        result, waited, reason = F.follow_log(source, 10)
    finally:
        source.close()
    done = time.monotonic()
    thread.join()
    assert source.polling and not source.ended and source.error is None
    assert reason == 'verdict' and result['mode'] == 'gpu' and result['starts'] == 1
    assert done - written[0] < 1.0


def test_journal_source_polls_only_when_the_output_changed(tmp_path, monkeypatch):
    path = tmp_path / 'journal.txt'
    path.write_text(lines(CONFIG_12, LISTEN_12))
    source = F.JournalSource([sys.executable, '-c', FAKE_JOURNALCTL_NO_INOTIFY, str(path), '--follow'],
                             interval=0.05)
    texts = [source.read(0.2) for _ in range(10)]
    source.close()
    assert source.polling
    assert [reset for text, reset in texts if text] == [False, True]      # the follower's, then one poll
    assert all(text == lines(CONFIG_12, LISTEN_12) for text, reset in texts if text)


def test_journal_source_other_ends_stop_it():
    source = F.JournalSource([sys.executable, '-c', 'import sys; sys.stderr.write("No journal files were found.\\n")'])
    result, waited, reason = F.follow_log(source, 5)
    source.close()
    assert reason == 'ended' and not source.polling and 'No journal files' in source.error


def test_journal_source_poll_failure_ends_it(tmp_path):
    script = ('import sys\n'
              'sys.stderr.write("Insufficient watch descriptors available. Reverting to -n.\\n" if "--follow" '
              'in sys.argv else "Failed to open journal: Permission denied\\n")\n'
              'sys.exit(0 if "--follow" in sys.argv else 1)\n')
    source = F.JournalSource([sys.executable, '-c', script, '--follow'])
    result, waited, reason = F.follow_log(source, 5)
    assert reason == 'ended' and source.polling and 'Permission denied' in source.close()


def test_follow_timeout_zero_still_reads_a_whole_multi_chunk_file(tmp_path):
    path = str(tmp_path / 'three-mib.log')
    filler = 'time=2025-11-25T09:00:00.000Z level=INFO source=x.go:1 msg="request" n=%s\n' % ('y' * 150)
    with open(path, 'w') as f:
        f.write(lines(CONFIG_12, LISTEN_12, CPU_12))
        f.write(filler * (3 * 1024 * 1024 // len(filler)))    # below the tail-scan size, over one read chunk
        f.write(lines(CONFIG_12, LISTEN_12, IC_12))
    result, waited, reason = F.follow_log(F.FileSource(path), 0)
    assert result['mode'] == 'gpu' and result['starts'] == 2


# ------------------------------------------------------------------ saved logs give their verdict at once

def _saved(tmp_path, text, age=3600):
    """A saved copy: written, closed, and last changed ``age`` seconds ago."""
    path = tmp_path / 'saved.log'
    path.write_text(text)
    then = time.time() - age
    os.utime(str(path), (then, then))
    return str(path)


def test_while_written_static_file_without_verdict_ends_at_once_with_the_default_timeout(tmp_path):
    path = _saved(tmp_path, lines(CONFIG_30, LISTEN_30, DISCOVERING_30))
    source = F.FileSource(path, follow='while_written')
    began = time.monotonic()
    result, waited, reason = F.follow_log(source, 60)
    took = time.monotonic() - began
    source.close()
    assert reason == 'ended' and result['mode'] == 'unknown' and result['starts'] == 1
    assert took < 0.5 and source.complete == 'no process has it open for writing'
    # the default (always) still follows until the deadline
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(path), 0.3)
    assert reason == 'timeout' and time.monotonic() - began >= 0.29


def test_while_written_static_file_with_unstamped_records_needs_no_settle(tmp_path):
    bare = IC_30_VULKAN[IC_30_VULKAN.index('level='):]
    path = _saved(tmp_path, lines(LISTEN_30, bare))
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(path, follow='while_written'), 60)
    assert result['mode'] == 'gpu' and reason == 'ended' and time.monotonic() - began < 0.2


def test_while_written_a_file_written_just_now_waits_only_the_recent_write_window(tmp_path):
    path = tmp_path / 'fresh.log'
    path.write_text(lines(CONFIG_30, LISTEN_30))
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(str(path), follow='while_written'), 60)
    assert reason == 'ended' and result['mode'] == 'unknown'
    assert time.monotonic() - began < F.RECENT_WRITE + 0.5


def test_while_written_follows_a_sink_a_process_holds_open(tmp_path):
    """A StandardError=append: sink: the service holds the descriptor all along and is silent for longer than
    the recent-write window and the writer re-check while it discovers; the verdict still comes."""
    path = str(tmp_path / 'ollama-stderr.log')
    sink = open(path, 'a')
    sink.write(lines(CONFIG_30, LISTEN_30, DISCOVERING_30))
    sink.flush()
    written = []

    def service():
        time.sleep(1.6)
        sink.write(stamped(IC_30_CUDA) + '\n')
        sink.flush()
        written.append(time.monotonic())

    thread = threading.Thread(target=service)
    thread.start()
    source = F.FileSource(path, follow='while_written')
    try:
        result, waited, reason = F.follow_log(source, 10)
    finally:
        thread.join()
        sink.close()
        source.close()
    assert reason == 'verdict' and result['mode'] == 'gpu'
    assert os.getpid() in source.writers and source.is_complete() is False
    assert time.monotonic() - written[0] < 1.0 and 1.5 < waited < 3.0


def test_while_written_ends_once_the_writer_closed(tmp_path):
    path = str(tmp_path / 'ollama-stderr.log')
    sink = open(path, 'a')
    sink.write(lines(CONFIG_30, LISTEN_30))
    sink.flush()
    closer = threading.Timer(0.8, sink.close)
    closer.start()
    began = time.monotonic()
    result, waited, reason = F.follow_log(F.FileSource(path, follow='while_written'), 30)
    closer.join()
    assert reason == 'ended' and result['mode'] == 'unknown'
    assert 0.7 < time.monotonic() - began < 0.8 + F.WRITERS_RECHECK + F.RECENT_WRITE + 0.3


def test_file_writers_sees_write_descriptors_only(tmp_path):
    path = tmp_path / 'f.log'
    path.write_text('x\n')
    st = os.stat(str(path))
    ident = (st.st_dev, st.st_ino)
    with open(str(path)) as reader:
        pids, complete = F.file_writers(ident)
        assert os.getpid() not in pids
        assert complete is (os.geteuid() == 0)
        with open(str(path), 'r+') as writer:
            assert os.getpid() in F.file_writers(ident)[0]
        assert reader.read() == 'x\n'


def _fake_proc(tmp_path, target, flags):
    proc = tmp_path / 'proc'
    (proc / 'self').mkdir(parents=True)
    for pid, flag in ((100, flags), (200, None)):
        fd = proc / str(pid) / 'fd'
        fd.mkdir(parents=True)
        (proc / str(pid) / 'fdinfo').mkdir()
        if flag is not None:
            os.symlink(target, str(fd / '2'))
            (proc / str(pid) / 'fdinfo' / '2').write_text('pos:\t0\nflags:\t%s\nmnt_id:\t30\n' % flag)
    return str(proc)


@pytest.mark.parametrize('flags,writer', [('02102001', True), ('0100002', True), ('0100000', False)])
def test_file_writers_reads_the_access_mode_from_fdinfo(tmp_path, flags, writer):
    target = tmp_path / 'sink.log'
    target.write_text('')
    st = os.stat(str(target))
    pids, complete = F.file_writers((st.st_dev, st.st_ino), proc=_fake_proc(tmp_path, str(target), flags))
    assert pids == ([100] if writer else [])


def test_not_root_or_unreadable_processes_fall_back_to_the_modification_time(tmp_path, monkeypatch):
    monkeypatch.setattr(F.os, 'geteuid', lambda: 1000)
    target = tmp_path / 'sink.log'
    target.write_text(lines(CONFIG_30, LISTEN_30))
    proc = _fake_proc(tmp_path, str(target), '0100000')
    st = os.stat(str(target))
    assert F.file_writers((st.st_dev, st.st_ino), proc=proc) == ([], False)
    # changed 10 s ago: it may still be a live sink the caller cannot see the writer of - keep following
    then = time.time() - 10
    os.utime(str(target), (then, then))
    source = F.FileSource(str(target), follow='while_written', proc=proc)
    result, waited, reason = F.follow_log(source, 0.3)
    assert reason == 'timeout'
    # unchanged for longer than Ollama can be silent while discovering: complete
    then = time.time() - F.STALE_AFTER - 1
    os.utime(str(target), (then, then))
    source = F.FileSource(str(target), follow='while_written', proc=proc)
    result, waited, reason = F.follow_log(source, 60)
    assert reason == 'ended' and waited < 0.5 and 'could not be looked at' in source.complete


def test_file_source_follow_value_is_checked():
    with pytest.raises(ValueError):
        F.FileSource('/x', follow='sometimes')


def test_is_complete_after_an_early_verdict_on_a_saved_file(tmp_path):
    path = _saved(tmp_path, lines(CONFIG_30, LISTEN_30, IC_30_CUDA, CTX_30))
    source = F.FileSource(path, follow='while_written')
    result, waited, reason = F.follow_log(source, 60)
    assert reason == 'verdict' and not source.ended      # the stamps gave the verdict before EOF was seen
    assert source.is_complete() is True
    assert F.FileSource(path).is_complete() is False      # follow=always never calls a file complete


# ------------------------------------------------------------------ open_current_log: the current invocation's log

SHOW = {'Id': 'ollama.service', 'InvocationID': '5e3b2a8c', 'MainPID': '2210', 'StandardOutput': 'journal',
        'StandardError': 'inherit', 'FragmentPath': '', 'DropInPaths': ''}


@pytest.fixture
def no_boot_id(monkeypatch):
    monkeypatch.setattr(F, 'boot_id', lambda: 'b00t')


def test_open_current_log_journal_sink(no_boot_id):
    spec = F.open_current_log(dict(SHOW), 'ollama', journalctl='/usr/bin/journalctl')
    assert spec.kind == 'journal' and spec.error is None and spec.accept_start is None
    assert spec.target == SC.journal_command('/usr/bin/journalctl', 'ollama.service', '5e3b2a8c', '2210', 'b00t')
    assert spec.poll_target == [a for a in spec.target if a not in ('--follow', '--no-tail')]
    # as ollama_gpu_mode reports log_source
    assert spec.desc == 'journal:' + ' '.join(spec.target[5:])
    assert spec.desc == 'journal:_SYSTEMD_INVOCATION_ID=5e3b2a8c + _SYSTEMD_UNIT=ollama.service _PID=2210 ' \
                        '_BOOT_ID=b00t'


def test_open_current_log_journal_without_follow_has_the_same_description(no_boot_id):
    follow = F.open_current_log(dict(SHOW), 'ollama', journalctl='/j')
    once = F.open_current_log(dict(SHOW), 'ollama', journalctl='/j', follow=False)
    assert '--follow' not in once.target and once.target == once.poll_target
    assert once.desc == follow.desc


def test_open_current_log_looks_journalctl_up_only_for_a_journal_sink(no_boot_id, tmp_path):
    asked = []
    log = tmp_path / 'o.log'
    log.write_text('')
    spec = F.open_current_log(dict(SHOW, StandardError='append:%s' % log), 'ollama',
                              journalctl=lambda: asked.append(1) or '/j')
    assert spec.kind == 'file' and asked == []
    spec = F.open_current_log(dict(SHOW), 'ollama', journalctl=lambda: asked.append(1) or '/j')
    assert spec.kind == 'journal' and spec.target[0] == '/j' and asked == [1]


def test_open_current_log_missing_journalctl(no_boot_id):
    for journalctl in (None, lambda: None):
        spec = F.open_current_log(dict(SHOW), 'ollama', journalctl=journalctl)
        assert spec.kind is None and spec.reason == 'no_journalctl' and spec.error == 'journalctl not found'
        assert spec.desc is None


def test_open_current_log_file_sink(tmp_path):
    log = tmp_path / 'ollama.log'
    log.write_text(lines(CONFIG_12, LISTEN_12, IC_12))
    spec = F.open_current_log(dict(SHOW, StandardError='append:%s' % log), 'ollama')
    assert (spec.kind, spec.target, spec.desc, spec.error) == ('file', str(log), 'file:%s' % log, None)
    assert spec.accept_start is None and spec.saved is False and spec.setting == 'StandardError=append:%s' % log
    source = spec.open()
    try:
        assert isinstance(source, F.FileSource) and source.follow == 'always' and source.path == str(log)
    finally:
        source.close()


def test_open_current_log_file_sink_accept_start(tmp_path):
    log = tmp_path / 'ollama.log'
    log.write_text('')
    show = dict(SHOW, StandardError='append:%s' % log)
    start = R.log_time_to_epoch('2025-11-25T10:00:00.101Z')
    current = L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12))
    for started in (start, lambda: start):
        accept = F.open_current_log(show, 'ollama', started=started).accept_start
        assert accept(current) is True
        assert accept(dict(current, start_epoch=start - 3600)) is False
    # a callable that finds no timestamp: any start counts, an empty file does not
    accept = F.open_current_log(show, 'ollama', started=lambda: None).accept_start
    assert accept(current) is True and accept(L.parse_log('')) is False
    # a journal sink never needs one
    assert F.open_current_log(dict(SHOW), 'ollama', journalctl='/j', started=start).accept_start is None


def test_open_current_log_file_sink_that_does_not_exist_keeps_its_target(tmp_path):
    path = str(tmp_path / 'later.log')
    spec = F.open_current_log(dict(SHOW, StandardError='append:%s' % path), 'ollama')
    assert spec.kind == 'file' and spec.desc == 'file:%s' % path
    assert spec.reason == 'missing_file' and spec.error == '%s does not exist' % path


def test_open_current_log_file_forced_without_a_file_sink():
    spec = F.open_current_log(dict(SHOW), 'ollama', source='file')
    assert spec.kind is None and spec.reason == 'no_file_sink' and spec.setting == 'StandardOutput=journal'


def test_open_current_log_unsupported_sink():
    spec = F.open_current_log(dict(SHOW, StandardError='null'), 'ollama', journalctl='/j')
    assert spec.kind is None and spec.reason == 'unsupported_sink' and spec.desc is None
    assert 'cannot read' in spec.error and 'StandardError=null' in spec.error
    with pytest.raises(ValueError):
        spec.open()


def test_open_current_log_journal_forced_over_a_file_sink(no_boot_id):
    spec = F.open_current_log(dict(SHOW, StandardError='append:/nonexistent/o.log'), 'ollama', source='journal',
                              journalctl='/j')
    assert spec.kind == 'journal' and spec.error is None


def test_open_current_log_log_path_wins(tmp_path):
    log = tmp_path / 'ticket.log'
    log.write_text(lines(CONFIG_12, LISTEN_12, IC_12))
    for props in (None, dict(SHOW)):
        spec = F.open_current_log(props, 'ollama', journalctl='/j', source='journal', log_path=str(log),
                                  started=lambda: 1 / 0)
        assert (spec.kind, spec.desc, spec.error, spec.accept_start) == ('file', 'file:%s' % log, None, None)
        assert spec.saved is True
    source = spec.open()
    try:
        assert source.follow == 'while_written'
    finally:
        source.close()
    missing = F.open_current_log(None, 'ollama', log_path=str(tmp_path / 'nope.log'))
    assert missing.reason == 'missing_file' and missing.desc == 'file:%s' % (tmp_path / 'nope.log')
    directory = F.open_current_log(None, 'ollama', log_path=str(tmp_path))
    assert directory.reason == 'missing_file'


def test_open_current_log_unreadable_file(tmp_path, monkeypatch):
    log = tmp_path / 'secret.log'
    log.write_text('')
    monkeypatch.setattr(F.os, 'access', lambda path, mode: False)
    spec = F.open_current_log(None, 'ollama', log_path=str(log))
    assert spec.reason == 'unreadable_file' and spec.error == '%s is not readable' % log


def test_open_current_log_without_systemd():
    spec = F.open_current_log(None, 'ollama')
    assert spec.kind is None and spec.reason == 'no_unit' and spec.desc is None
    assert spec.error == 'no log: systemd is not running and log_path is not set'


def test_current_log_open_gives_a_journal_source_with_the_poll_fallback(no_boot_id, monkeypatch):
    made = []

    class FakeCommandSource(object):
        def __init__(self, argv, env=None):
            made.append((argv, env))

    monkeypatch.setattr(F, 'CommandSource', FakeCommandSource)
    spec = F.open_current_log(dict(SHOW), 'ollama', journalctl='/j')
    source = spec.open(env={'LC_ALL': 'C'})
    assert isinstance(source, F.JournalSource) and source.poll_argv == spec.poll_target
    assert made == [(spec.target, {'LC_ALL': 'C'})] and source.env == {'LC_ALL': 'C'}


def test_open_current_log_file_sink_without_a_path_in_the_unit_files():
    spec = F.open_current_log(dict(SHOW, StandardError='append'), 'ollama')
    assert spec.kind is None and spec.reason == 'no_file_sink' and 'cannot read' in spec.error
    assert 'no file path in its unit files (StandardError=append)' in spec.error
