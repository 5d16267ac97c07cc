#!/usr/bin/env python3
"""Regenerate the OPTIONS section of a man page from the tool's --help, so the man
page and the options table (src/core/options_table.c) never disagree.
Usage: tests/tools/gen_man_options.py bin/moe-train man/moe-train.1
The section lies between the lines '.\\" BEGIN OPTIONS' and '.\\" END OPTIONS'."""
import re, subprocess, sys

tool, page = sys.argv[1], sys.argv[2]
help_text = subprocess.run([tool, "--help"], capture_output=True, text=True, check=True).stdout
out, item = [], None

def esc(s):
    return s.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")

def flush():
    global item
    if item:
        head, body = item
        out.append(".TP")
        out.append(head)
        out.append(esc(" ".join(body).strip()))
    item = None

in_opts = False
for line in help_text.splitlines():
    if re.match(r"^[A-Z][A-Za-z ]+:$", line):
        flush()
        in_opts = True
        out.append(".SS " + line[:-1])
        continue
    if not in_opts:
        continue
    # an option's line starts "  -x, --name" or "      --name"; the help follows after two or
    # more spaces. Continuation lines are indented to the help column: they are never options,
    # even when a wrapped help line begins with "--other-option".
    m = re.match(r"^  (?:-(\w), |    )--([\w-]+)((?: \S+)*?)\s{2,}(.*)$", line) or \
        re.match(r"^  (?:-(\w), |    )--([\w-]+)((?: \S+)*)$", line)
    if m:
        flush()
        short, name, meta = m.group(1), m.group(2), m.group(3).strip()
        rest = m.group(4) if m.lastindex >= 4 else ""
        head = ""
        if short:
            head += "\\fB\\-%s\\fR, " % short
        head += "\\fB\\-\\-%s\\fR" % esc(name).replace("\\-", "-").replace("-", "\\-")
        if meta:
            head += " \\fI%s\\fR" % esc(meta)
        item = (head, [rest or ""])
    elif item and line.startswith(" " * 10):
        item[1].append(line.strip())
flush()

text = open(page).read()
begin, end = '.\\" BEGIN OPTIONS\n', '.\\" END OPTIONS\n'
a, b = text.index(begin) + len(begin), text.index(end)
open(page, "w").write(text[:a] + "\n".join(out) + "\n" + text[b:])
