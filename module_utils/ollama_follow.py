# -*- coding: utf-8 -*-
# Following a growing Ollama log, and opening the current invocation's log (target side, Python 3.8+ stdlib).
"""Follow a growing Ollama log until its last start has a verdict, and find where that log is.

A log is a file, or a command such as ``journalctl -f`` (``JournalSource`` polls the journal instead when
journalctl cannot follow); ``follow_log(source, timeout)`` feeds any of them to ``ollama_log.LogParser``
until the start has a verdict; all sources share that loop. A saved file is not followed once nothing
writes it (``FileSource(follow='while_written')``, ``file_writers``).

``open_current_log(props, unit, ...)`` says where the current invocation of the unit logs (a ``CurrentLog``:
journald or a file sink, or why it cannot be read) and opens it as one of these sources.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import codecs
import copy
import errno
import os
import select
import subprocess
import tempfile
import time

from ansible.module_utils.ollama_log import LogParser
from ansible.module_utils.vgpu_systemctl import (LOG_SINK_PROPERTIES, boot_id, journal_command, log_sink,
                                                 start_not_older_than)

# --------------------------------------------------------------------------- reading a growing file

TAIL_SCAN_MIN = 4 * 1024 * 1024
_START_MARKERS = (b'msg="server config"', b'INFO server config', b'msg="Listening on ')


def last_start_offset(fh, size, block=1024 * 1024, lead=64 * 1024):
    """Byte offset a little before the last server start in a big file (0 if none is found).

    Saves parsing months of log: the parser keeps only the last start anyway. ``lead`` bytes before the
    marker are kept so loader errors printed just before the start are still seen.
    """
    pos = size
    tail = b''
    while pos > 0:
        begin = max(0, pos - block)
        fh.seek(begin)
        chunk = fh.read(pos - begin) + tail
        found = max(chunk.rfind(m) for m in _START_MARKERS)
        if found >= 0:
            offset = max(0, begin + found - lead)
            if offset == 0:
                return 0
            fh.seek(offset)
            head = fh.read(min(lead, size - offset))
            newline = head.find(b'\n')
            return offset + newline + 1 if newline >= 0 else offset
        tail = chunk[:64]
        pos = begin
    return 0


# A file still being written is followed; a complete one is judged at once. "Being written" is what a
# process holding the file open for writing means: systemd opens a StandardError=append:/file:/truncate: sink
# and the service inherits the descriptor for its whole life, and `journalctl -f >> f`, docker's and kubectl's
# log writers keep theirs open as well. A writer that opens, appends and closes is caught by the modification
# time (RECENT_WRITE). Only a caller that can see every process (root, with /proc) gets an exact answer;
# anyone else (no /proc, no root, no CAP_SYS_PTRACE in a container) treats a file as being written until it has
# not changed for STALE_AFTER seconds - longer than Ollama can stay silent while discovering GPUs (a 30 s
# first pass, 90 s on some platforms, then a 30 s second pass: discover/runner.go:80-87,123@v0.30.11).
RECENT_WRITE = 0.5
STALE_AFTER = 150.0
WRITERS_RECHECK = 1.0
_O_ACCMODE, _O_WRONLY, _O_RDWR = 3, 1, 2


def _fd_writes(proc, pid, fd):
    """True when descriptor ``fd`` of ``pid`` is open for writing (its ``fdinfo`` flags); True if unknown."""
    try:
        with open(os.path.join(proc, pid, 'fdinfo', fd)) as fh:
            for line in fh:
                if line.startswith('flags:'):
                    return (int(line.split()[1], 8) & _O_ACCMODE) in (_O_WRONLY, _O_RDWR)
    except (IOError, OSError, ValueError, IndexError):
        pass
    return True


def file_writers(ident, proc='/proc'):
    """(pids, complete): the processes holding the file ``ident`` ((st_dev, st_ino)) open for writing, and
    whether every process could be looked at (only root sees every ``/proc/<pid>/fd``; ``hidepid=`` hides
    processes from anyone else). Read-only descriptors (this reader's own) do not count."""
    pids = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return pids, False
    complete = hasattr(os, 'geteuid') and os.geteuid() == 0
    for entry in entries:
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, 'fd')
        try:
            fds = os.listdir(fd_dir)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):     # a process that just ended is no writer
                complete = False
            continue
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident and _fd_writes(proc, entry, fd):
                pids.append(int(entry))
                break
    return pids, complete


class FileSource(object):
    """A log file read from the start (or near its last server start) and then as it grows.

    ``read(wait)`` returns (text, reset): reset is True when the file was truncated or replaced and the
    text starts a new file (the caller then starts a new parser). A missing file is waited for.

    ``follow``: ``always`` (default: a live unit's sink, followed until the caller's deadline) or
    ``while_written``: once every byte is read and no process is writing the file any more (see
    ``file_writers``, ``RECENT_WRITE``, ``STALE_AFTER``), the source ends (``ended``; ``complete`` says why),
    so a saved log is judged at once while a sink still being written is followed as before.
    """

    CHUNK = 1024 * 1024
    # has_more() is exact: once it is False, every byte written so far has been read
    exact_tail = True

    def __init__(self, path, poll=0.05, tail_scan=True, follow='always', proc='/proc'):
        if follow not in ('always', 'while_written'):
            raise ValueError('follow must be always or while_written, got %r' % (follow,))
        self.path = path
        self.poll = poll
        self.tail_scan = tail_scan
        self.follow = follow
        self.proc = proc
        self.ended = False
        self.error = None
        # while_written: why the file counts as complete (set when the source ends), and the last writers seen
        self.complete = None
        self.writers = []
        self._scanned_at = None
        self._scan_complete = False
        self._fd = None
        self._ident = None
        self._offset = 0
        self._opened_once = False
        self._decoder = None

    def _open(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            self.error = '%s: %s' % (self.path, exc.strerror)
            return False
        st = os.fstat(fd)
        self.error = None
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._offset = 0
        self._scanned_at = None
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
        if self.tail_scan and st.st_size > TAIL_SCAN_MIN:
            with os.fdopen(os.dup(fd), 'rb') as fh:
                self._offset = last_start_offset(fh, st.st_size)
        os.lseek(fd, self._offset, os.SEEK_SET)
        return True

    def has_more(self):
        """True while bytes already written are still unread (judge only once caught up)."""
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_size > self._offset
        except OSError:
            return False

    def being_written(self):
        """While_written: is the (fully read) file still being written? Sets ``complete`` when it is not."""
        try:
            age = time.time() - os.fstat(self._fd).st_mtime
        except OSError:
            return False
        if -1.0 < age < RECENT_WRITE:
            return True
        now = time.monotonic()
        if self._scanned_at is None or now - self._scanned_at >= WRITERS_RECHECK:
            self._scanned_at = now
            self.writers, self._scan_complete = file_writers(self._ident, self.proc)
        if self.writers:
            return True
        if self._scan_complete:
            self.complete = 'no process has it open for writing'
            return False
        if age < STALE_AFTER:
            return True
        self.complete = 'unchanged for %d s (the writers could not be looked at: not root?)' % age
        return False

    def is_complete(self):
        """While_written: True when every byte is read and nothing writes the file any more (the verdict may
        have come before the source ended; this answers for the file as it is now)."""
        if self.ended:
            return True
        if self.follow != 'while_written' or self._fd is None or self.has_more():
            return False
        self._scanned_at = None
        return not self.being_written()

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self):
        self._close()

    def read(self, wait):
        deadline = time.monotonic() + max(0.0, wait)
        reset = False
        while True:
            if self.ended:
                return '', reset
            if self._fd is None and self._open():
                reset = self._opened_once
                self._opened_once = True
            if self._fd is not None:
                size = os.fstat(self._fd).st_size
                if size < self._offset:     # truncated (StandardError=truncate:, copytruncate)
                    self._offset = 0
                    os.lseek(self._fd, 0, os.SEEK_SET)
                    self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
                    reset = True
                data = os.read(self._fd, self.CHUNK)
                if data:
                    self._offset += len(data)
                    return self._decoder.decode(data), reset
                try:
                    st = os.stat(self.path)
                    replaced = (st.st_dev, st.st_ino) != self._ident
                except OSError:
                    replaced = False
                if replaced:                # rotated: finish nothing more from the old one, reopen
                    self._close()
                    continue
                if self.follow == 'while_written' and not self.being_written():
                    self.ended = True
                    return self._decoder.decode(b'', True), reset
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return '', reset
            time.sleep(min(self.poll, remaining))


class CommandSource(object):
    """The standard output of a command that follows a log (``journalctl -f``), read with select().

    ``ended`` turns True when the command closes its output; ``close()`` stops it and returns its
    standard error text (kept in a temporary file, so a chatty command never blocks).
    """

    # has_more() only sees what the command has already flushed into the pipe, not what it is about to
    exact_tail = False

    def __init__(self, argv, env=None):
        self.argv = list(argv)
        self.ended = False
        self.error = None
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, close_fds=True, env=env)

    def read(self, wait):
        if self.ended:
            time.sleep(max(0.0, min(wait, 0.05)))
            return '', False
        ready = select.select([self.proc.stdout], [], [], max(0.0, wait))[0]
        if not ready:
            return '', False
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            self.ended = True
            return self._decoder.decode(b'', True), False
        return self._decoder.decode(data), False

    def has_more(self):
        if self.ended:
            return False
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.seek(0)
        err = self._stderr.read().decode('utf-8', 'replace').strip()
        self._stderr.close()
        self.error = err or None
        return err


# journalctl's words when it cannot get an inotify instance to follow with (it then prints what there
# is and exits): fs.inotify.max_user_instances is per user, and every container on a kernel shares root's
INOTIFY_EXHAUSTED = ('Insufficient watch descriptors available', 'Reverting to -n')


class JournalSource(object):
    """``journalctl --follow``, or polling the same query when journalctl cannot follow.

    Starts ``argv`` (a following journalctl) as a ``CommandSource``. When that ends and its standard
    error says the inotify instances are used up (``INOTIFY_EXHAUSTED``), it switches to re-running
    ``poll_argv`` (the same query without ``--follow``; by default ``argv`` less ``--follow``/``-f``)
    every ``interval`` seconds; each run whose output differs from the last is returned whole, as a
    new text (reset). Any other end of the follower, or a failing poll, ends the source as
    ``CommandSource`` would (``ended``, ``error``). ``env`` replaces the environment of both commands.
    """

    def __init__(self, argv, poll_argv=None, interval=0.1, run_timeout=10.0, env=None):
        self.argv = list(argv)
        self.poll_argv = list(poll_argv) if poll_argv else [a for a in argv if a not in ('--follow', '-f')]
        self.interval, self.run_timeout, self.env = interval, run_timeout, env
        self.polling = self.ended = False
        self.error = None
        self._follower = CommandSource(self.argv, env=env)
        self._next_run = 0.0
        self._last_output = None

    @property
    def exact_tail(self):
        # a poll hands over a whole, finished output
        return self.polling

    def read(self, wait):
        if self.ended:
            time.sleep(max(0.0, min(wait, 0.05)))
            return '', False
        if self.polling:
            return self._poll(wait)
        text, reset = self._follower.read(wait)
        if self._follower.ended:
            err = self._follower.close() or ''
            if any(words in err for words in INOTIFY_EXHAUSTED):
                self.polling = True
                self._next_run = time.monotonic() + self.interval
            else:
                self.ended, self.error = True, err or None
        return text, reset

    def _poll(self, wait):
        pause = self._next_run - time.monotonic()
        if pause > 0:
            time.sleep(min(max(0.0, wait), pause))
            if time.monotonic() < self._next_run:
                return '', False
        self._next_run = time.monotonic() + self.interval
        try:
            proc = subprocess.run(self.poll_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, close_fds=True, timeout=self.run_timeout,
                                  env=self.env)
        except subprocess.TimeoutExpired:
            self.error = '%s did not finish within %s s' % (self.poll_argv[0], self.run_timeout)
            return '', False
        except OSError as exc:
            self.ended, self.error = True, '%s: %s' % (self.poll_argv[0], exc.strerror)
            return '', False
        if proc.returncode != 0:
            self.ended = True
            self.error = proc.stderr.decode('utf-8', 'replace').strip() or (
                '%s exited with status %d' % (self.poll_argv[0], proc.returncode))
            return '', False
        self.error = None
        if proc.stdout == self._last_output:
            return '', False
        self._last_output = proc.stdout
        return proc.stdout.decode('utf-8', 'replace'), True

    def has_more(self):
        return not (self.polling or self.ended) and self._follower.has_more()

    def close(self):
        if not (self.polling or self.ended):
            self.error = self._follower.close() or None
        return self.error or ''


def follow_log(source, timeout, accept_start=None, settle=0.3, poll=0.05, drain=10.0, clock=time.monotonic,
               wall=time.time):
    """Feed ``source`` to a parser until the current start has a verdict or ``timeout`` passes.

    Returns (result, waited_seconds, reason) with reason one of ``verdict``, ``timeout``, ``ended``.
    A verdict is final when a record follows the last ``inference compute`` record (the device list
    is complete) or, when the log goes quiet after it, ``settle`` seconds later (old versions print
    nothing after discovery until the first request). The time since that record was written (its
    ``time=`` stamp against ``wall``, the clock of the host that wrote it) counts toward ``settle``,
    so a log read after the fact is judged at once; a source whose ``has_more()`` cannot see what is
    about to arrive (``exact_tail`` false: a command's pipe) still gets one quiet ``poll`` first. A
    record without a stamp, or stamped in the future, counts from when it was read.
    ``accept_start(result)`` says whether the start found is the current one (a file sink still
    holding the previous process's start is not).
    Data already written when the deadline passes is still read, for at most ``drain`` more seconds.
    A source that ends (a command that exits, a ``FileSource(follow='while_written')`` that has read a file
    nothing writes any more) gives its final result at once, reason ``ended``.
    """
    parser = LogParser()
    began = clock()
    deadline = began + max(0.0, timeout)
    signature = None
    since = began
    while True:
        now = clock()
        text, reset = source.read(max(0.0, min(poll, deadline - now)))
        if reset:
            parser = LogParser()
        if text:
            parser.feed(text)
        now = clock()
        if source.has_more() and now < deadline + drain:
            # judge only once caught up: an older start may still be followed by newer ones (past the
            # deadline too, a little, so that timeout=0 still reads a whole saved file)
            continue
        result = parser.snapshot()
        current = accept_start is None or accept_start(result)
        if current and result['mode'] != 'unknown':
            sig = (result['starts'], result['inference_compute_count'], result['total_vram_zero'])
            if sig != signature:
                signature, since = sig, now - _quiet_already(result, source, settle, poll, wall)
            if result['verdict_closed'] or now - since >= settle:
                return result, now - began, 'verdict'
        if getattr(source, 'ended', False) and not text:
            result = parser.finish()
            return result, clock() - began, 'ended'
        if now >= deadline:
            # one last look at whatever arrived, as a complete text
            result = copy.deepcopy(parser).finish()
            if accept_start is not None and not accept_start(result):
                result = dict(result, mode='unknown', devices=[], stale_start=True)
            return result, now - began, 'timeout'


def _quiet_already(result, source, settle, poll, wall):
    """Seconds of the settle time that passed before the verdict's last record was read."""
    written = result.get('verdict_written')
    if written is None:
        return 0.0
    credit = min(settle, max(0.0, wall() - written))
    if not getattr(source, 'exact_tail', False):
        credit = min(credit, max(0.0, settle - poll))
    return credit


# --------------------------------------------------------------------------- the current invocation's log

# what open_current_log needs from `systemctl show` of the unit (besides Id, in LOG_SINK_PROPERTIES)
LOG_UNIT_PROPERTIES = ('InvocationID', 'MainPID') + LOG_SINK_PROPERTIES


class CurrentLog(object):
    """Where the current invocation's log is (``open_current_log``), and how to open it.

    ``kind``: ``file``, ``journal`` or None (no log to read); ``target``: the file path or the journalctl argv
    (``poll_target``: that query without ``--follow``); ``desc``: ``file:<path>`` or ``journal:<matches>``;
    ``accept_start``: follow_log's predicate (a file sink may still end with the previous process's start) or
    None; ``saved``: a saved file (``log_path``), judged once nothing writes it. ``error``: None, or why the
    log cannot be read, ``reason`` its code - ``no_unit``, ``no_file_sink``, ``unsupported_sink``,
    ``no_journalctl``, ``missing_file``, ``unreadable_file`` (the last two keep kind, target and desc: a live
    file sink that does not exist yet may still be waited for); ``setting`` the sink's ``StandardError=``.
    """

    def __init__(self, kind=None, target=None, desc=None, accept_start=None, error=None, reason=None,
                 setting=None, saved=False, poll_target=None):
        self.kind, self.target, self.desc, self.accept_start = kind, target, desc, accept_start
        self.error, self.reason, self.setting, self.saved = error, reason, setting, saved
        self.poll_target = poll_target

    def __repr__(self):
        return 'CurrentLog(kind=%r, desc=%r, error=%r)' % (self.kind, self.desc, self.error)

    def open(self, env=None):
        """The source to give follow_log: a ``FileSource`` (a saved file: ``follow='while_written'``) or a
        ``JournalSource`` that polls ``poll_target`` when journalctl cannot follow (``env`` for journalctl)."""
        if self.kind == 'file':
            return FileSource(self.target, follow='while_written' if self.saved else 'always')
        if self.kind == 'journal':
            return JournalSource(self.target, poll_argv=self.poll_target, env=env)
        raise ValueError('no log to open: %s' % (self.error or 'kind %r' % (self.kind,)))


def _file_log(path, **kwargs):
    spec = CurrentLog('file', path, 'file:%s' % path, **kwargs)
    if not os.path.isfile(path):
        spec.error, spec.reason = '%s does not exist' % path, 'missing_file'
    elif not os.access(path, os.R_OK):
        spec.error, spec.reason = '%s is not readable' % path, 'unreadable_file'
    return spec


def open_current_log(props, unit, journalctl=None, source='auto', log_path=None, started=None, follow=True):
    """Where the unit's current invocation logs, as a ``CurrentLog`` (its ``error`` says why it cannot be read).

    ``props``: `systemctl show` of the unit with ``LOG_UNIT_PROPERTIES`` and ``Id`` (None without systemd);
    ``source``: ``auto`` (the sink the unit really writes, ``log_sink``), ``journal`` or ``file`` (the path
    still from the unit); ``log_path``: a saved log file, which wins over everything else. ``journalctl``:
    its path, or a callable returning it or None, called only for a journal sink. ``started``: the unit's
    ExecMainStartTimestamp (epoch), or a callable returning it or None, called only for a file sink; when
    given, a file sink's ``accept_start`` takes only a start not older than it. ``follow``: journalctl follows
    the journal (``--follow``), or prints the invocation's entries and exits.
    """
    if log_path:
        return _file_log(log_path, saved=True)
    if props is None:
        return CurrentLog(error='no log: systemd is not running and log_path is not set', reason='no_unit')
    sink = log_sink(props)
    kind = sink['kind'] if source == 'auto' else source
    setting = sink['setting']
    if kind == 'file':
        if not sink['path']:
            why = 'no file path in its unit files' if sink['kind'] == 'file' else 'no file sink'
            return CurrentLog(error='cannot read the log: the unit has %s (%s)' % (why, setting),
                              reason='no_file_sink', setting=setting)
        if callable(started):
            started = started()
            accept = start_not_older_than(started)
        else:
            accept = start_not_older_than(started) if started is not None else None
        return _file_log(sink['path'], accept_start=accept, setting=setting)
    if kind != 'journal':
        return CurrentLog(error='cannot read the log: the unit sends it to %s' % setting, reason='unsupported_sink',
                          setting=setting)
    path = journalctl() if callable(journalctl) else journalctl
    if not path:
        return CurrentLog(error='journalctl not found', reason='no_journalctl', setting=setting)
    scope = (path, props.get('Id') or unit, props.get('InvocationID'), props.get('MainPID'), boot_id())
    argv = journal_command(*scope, follow=follow)
    return CurrentLog('journal', argv, 'journal:%s' % ' '.join(a for a in argv[1:] if not a.startswith('--')),
                      setting=setting, poll_target=journal_command(*scope, follow=False))
