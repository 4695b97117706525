#!/usr/bin/env python3
"""The simulator's fidelity table (simulator/fidelity.json): what each simulated
Ollama release does where the toolkit touches it, with its upstream source.

    python3 simulator/fidelity.py verify --ollama-git DIR   # check every cited line against upstream
    python3 simulator/fidelity.py markdown                  # the README's table of simulated behaviours
    python3 simulator/fidelity.py readme                    # rewrite that section of simulator/README.md
    python3 simulator/fidelity.py embed SRC VERSION         # bin/ollama: SRC with the table's source= lines

DIR is any git clone of github.com/ollama/ollama that has the release tags
(`git clone --bare https://github.com/ollama/ollama`).  Python 3.6+, stdlib only.

The table is the single owner of the `source=file.go:N` of every line the
simulator prints (the simulator reads them from it) and of the facts the
simulator's tests assert (tests/unit/test_simulator.py checks every row).
"""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "fidelity.json")
KINDS = ("log", "layout", "discovery", "runner_env", "driver_calls", "default", "not_modelled")


def load(path=TABLE):
    with open(path) as f:
        table = json.load(f)
    problems = check_shape(table)
    if problems:
        raise ValueError("%s: %s" % (path, "; ".join(problems)))
    return table


def releases(table):
    return [r["version"] for r in table["releases"]]


def rows(table, kind=None, release=None):
    out = []
    for r in table["rows"]:
        if kind and r["kind"] != kind:
            continue
        if release and r["release"] != release:
            continue
        out.append(r)
    return out


def sources(table):
    """{release: {key: "file.go:N"}} from the log rows: what the simulator prints as source="""
    out = dict((v, {}) for v in releases(table))
    for r in rows(table, "log"):
        out[r["release"]][r["key"]] = r["source"]
    return out


_CITE = re.compile(r"^([\w./+-]+):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)@(v[\w.+-]+)$")


def parse_cite(cite):
    """'discover/gpu.go:519-523@v0.5.7' or 'make/gpu.make:12,42,72-78@v0.5.7'
    -> (path, first line, last line, tag)"""
    m = _CITE.match(cite or "")
    if not m:
        raise ValueError("not path:line[-line][,line...]@tag: %r" % cite)
    nums = [int(x) for x in re.findall(r"\d+", m.group(2))]
    return m.group(1), nums[0], max(nums), m.group(3)


def check_shape(table):
    problems = []
    known = set(releases(table)) | {"*"}
    for i, r in enumerate(table.get("rows") or []):
        where = "row %d (%s %s %s)" % (i, r.get("release"), r.get("kind"), r.get("key") or r.get("name") or "")
        if r.get("kind") not in KINDS:
            problems.append("%s: kind must be one of %s" % (where, ", ".join(KINDS)))
        if r.get("release") not in known:
            problems.append("%s: release is not in releases" % where)
        cites = r.get("upstream")
        if not cites:
            problems.append("%s: no upstream citation" % where)
            continue
        for c in cites if isinstance(cites, list) else [cites]:
            if c.startswith(("http://", "https://")):
                continue
            try:
                parse_cite(c)
            except ValueError as e:
                problems.append("%s: %s" % (where, e))
        if r.get("kind") == "log":
            for k in ("key", "level", "msg", "attrs", "source", "when"):
                if k not in r:
                    problems.append("%s: log row without %s" % (where, k))
    return problems


# ---------------------------------------------------------------------------
# verify against upstream
# ---------------------------------------------------------------------------

_LEVEL_CALLS = {"INFO": ("slog.Info(", "slog.InfoContext("), "WARN": ("slog.Warn(", "slog.WarnContext("),
                "DEBUG": ("slog.Debug(", "slog.DebugContext("), "TRACE": ("logutil.Trace(", "slog.Log("),
                "ERROR": ("slog.Error(",)}


def _git_lines(git_dir, tag, path, cache):
    key = (tag, path)
    if key not in cache:
        r = subprocess.run(["git", "--git-dir", git_dir, "show", "%s:%s" % (tag, path)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        cache[key] = r.stdout.decode("utf-8", "replace").splitlines() if r.returncode == 0 else None
    return cache[key]


def _literal_parts(msg):
    """the constant fragments of a Go format string, longest first"""
    return sorted((p for p in re.split(r"%[-+# 0-9.]*[a-zA-Z]", msg) if len(p.strip()) >= 4), key=len, reverse=True)


def _file_cites(row):
    """(citation, path, first line, last line, tag) of the row's file citations, in order (links skipped)"""
    cites = row["upstream"] if isinstance(row["upstream"], list) else [row["upstream"]]
    return [(c,) + parse_cite(c) for c in cites if not c.startswith(("http://", "https://"))]


def verify_row(row, git_dir, cache):
    """-> list of problems (empty: the cited upstream lines say what the row says)"""
    out = []
    cites = _file_cites(row)
    for c, path, first, last, tag in cites:
        lines = _git_lines(git_dir, tag, path, cache)
        if lines is None:
            out.append("%s: no such file at the tag" % c)
            continue
        if last > len(lines):
            out.append("%s: the file has only %d lines" % (c, len(lines)))
            continue
        if row["kind"] != "log" or c != cites[0][0]:
            continue
        # a log row: the first citation is the call itself; the call may span lines
        # the message may be built by fmt.Errorf just above (slog.Info(err.Error())) and split
        # into concatenated literals
        text = "\n".join(lines[max(first - 4, 0):max(last, first + 12)])
        text = re.sub(r'"\s*\+\s*\n\s*"', "", text)
        head = lines[first - 1]
        calls = _LEVEL_CALLS.get(row["level"], ())
        if not any(k in head for k in calls) and not ("Errorf(" in head or "slog." in head):
            out.append("%s: line %d is not a %s call: %s" % (c, first, row["level"], head.strip()))
        elif "Errorf(" not in head and not any(k in head for k in calls):
            out.append("%s: line %d logs at another level than %s: %s" % (c, first, row["level"], head.strip()))
        for part in _literal_parts(row["msg"]) or [row["msg"]]:
            if part not in text:
                out.append("%s: message fragment %r not found at the call" % (c, part))
                break
        for a in row["attrs"]:
            if a in row.get("dynamic_attrs", ()):
                continue   # the key is a variable upstream (e.g. the env var's name)
            if ('"%s"' % a) not in text:
                out.append("%s: attribute %r not in the call" % (c, a))
        if row["source"] != "%s:%d" % (os.path.basename(path), first):
            out.append("%s: source %s is not the call's file:line" % (c, row["source"]))
    return out


def _cited_text(row, git_dir, cache):
    """the cited lines of every file citation of the row, joined (for the literal checks below)"""
    parts = []
    for c, path, first, last, tag in _file_cites(row):
        lines = _git_lines(git_dir, tag, path, cache) or []
        parts.append("\n".join(lines[first - 1:last]))
    return "\n".join(parts)


def verify_literals(row, git_dir, cache):
    """what a non-log row states that the cited lines must contain literally: the fixed globs of a
    discovery row, the dlsym names of an in-process driver_calls row, the default of a default row"""
    text = _cited_text(row, git_dir, cache)
    out = []
    if row["kind"] == "discovery":
        for g in row["search"]:
            # the fixed globs of in-process discovery; a loader row's steps are glibc's, not Ollama's
            if "*" in g and not any(ch in g for ch in "<$") and ('"%s"' % g) not in text:
                out.append("glob %s not in the cited lines" % g)
    elif row["kind"] == "driver_calls" and all(re.match(r"^cu\w+$", c) for c in row["calls"]):
        for c in row["calls"]:
            if ('"%s"' % c) not in text:
                out.append("%s not in the cited lines" % c)
    elif row["kind"] == "default" and row["name"] == "OLLAMA_NUM_PARALLEL":
        if ('Uint("OLLAMA_NUM_PARALLEL", %s)' % row["value"]) not in text:
            out.append("Uint(\"OLLAMA_NUM_PARALLEL\", %s) not at the cited line" % row["value"])
    return out


def verify(table, git_dir):
    cache = {}
    bad = 0
    for r in table["rows"]:
        problems = verify_row(r, git_dir, cache)
        if not problems:
            problems = verify_literals(r, git_dir, cache)
        for p in problems:
            bad += 1
            print("%s %s %s: %s" % (r["release"], r["kind"], r.get("key") or r.get("name") or "", p))
    n = len(table["rows"])
    print("%d rows, %d problems" % (n, bad))
    return 1 if bad else 0


# ---------------------------------------------------------------------------
# README table
# ---------------------------------------------------------------------------


def _fmt_value(r):
    k = r["kind"]
    if k == "log":
        return "%s `%s` %s" % (r["level"], r["msg"], " ".join(r["attrs"]))
    if k == "layout":
        return ", ".join("`%s`" % p for p in r["paths"])
    if k == "discovery":
        return "%s; %s" % (r["mechanism"], " -> ".join("`%s`" % s for s in r["search"]))
    if k == "runner_env":
        return ", ".join("`%s`" % e for e in r["env"])
    if k == "driver_calls":
        return ", ".join(r["calls"])
    if k == "default":
        return "`%s` = `%s`" % (r["name"], r["value"])
    return r.get("what", "")


def markdown(table):
    lines = ["| release | kind | what | simulated | upstream |", "|---|---|---|---|---|"]
    for r in table["rows"]:
        cites = r["upstream"] if isinstance(r["upstream"], list) else [r["upstream"]]
        what = _fmt_value(r).replace("|", "\\|")
        if r["kind"] == "log":
            what = "%s (%s)" % (r["key"], what)
        lines.append("| %s | %s | %s | %s | %s |" % (r["release"], r["kind"], what,
                                                     r.get("simulated", "yes"), ", ".join(cites)))
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- fidelity table: generated by `python3 simulator/fidelity.py markdown`; do not edit -->"
README_END = "<!-- end of fidelity table -->"


def readme_section(table):
    return "%s\n%s%s" % (README_BEGIN, markdown(table), README_END)


# ---------------------------------------------------------------------------
# embedding into bin/ollama
# ---------------------------------------------------------------------------

MARKER = "FIDELITY_SOURCES = None  # @FIDELITY_SOURCES@"


def embed(src_path, version, table):
    with open(src_path) as f:
        text = f.read()
    if MARKER not in text:
        raise ValueError("%s has no %r line" % (src_path, MARKER))
    data = json.dumps(sources(table), sort_keys=True)
    text = text.replace(MARKER, "FIDELITY_SOURCES = json.loads(%r)" % data, 1)
    return text.replace("@VERSION@", version)


def main(argv):
    if len(argv) >= 1 and argv[0] == "verify":
        git_dir = None
        if len(argv) >= 3 and argv[1] == "--ollama-git":
            git_dir = argv[2]
        if not git_dir:
            sys.stderr.write("usage: fidelity.py verify --ollama-git DIR\n")
            return 2
        return verify(load(), git_dir)
    if argv[:1] == ["markdown"]:
        sys.stdout.write(markdown(load()))
        return 0
    if argv[:1] == ["readme"]:   # rewrite the generated section of simulator/README.md in place
        path = os.path.join(HERE, "README.md")
        with open(path) as f:
            text = f.read()
        a, b = text.index(README_BEGIN), text.index(README_END) + len(README_END)
        text = text[:a] + readme_section(load()) + text[b:]
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        return 0
    if argv[:1] == ["embed"] and len(argv) == 3:
        sys.stdout.write(embed(argv[1], argv[2], load()))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
